// TraitColumns: the trait values that a workspace's conditions read, kept per path as a
// dictionary-encoded column indexed by contact id, so that a condition reading only traits can
// be answered over every contact without parsing anyone's traits (segment preview).
//
// A column holds one 16-bit code per contact: 0 = no contact of this workspace, 1 = missing or
// null, 2.. = a scalar value (string, number, bool) from the column's dictionary. Decoding a
// code gives the same rules::Value that rules::Lookup gives on the traits document, so a
// condition evaluated on decoded values means exactly what it means on the document.
//
// A path stops being kept ("spoiled": Find answers -1 and its memory is freed) when a contact
// holds an array or an object there, or when it has more than kMaxDistinct different values
// (an email, a timestamp): conditions on it are evaluated from the traits document instead.
//
// Not thread-safe: the segment engine calls it holding its cache mutex (exclusively to change).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rules/value.h"
#include "store/store.h"

namespace nudge::segment {

class TraitColumns {
 public:
  static constexpr size_t kMaxDistinct = 65000;
  static constexpr uint16_t kAbsent = 0;
  static constexpr uint16_t kNull = 1;

  // Registers a path; true when it is new (its column is empty until filled by Set/Fill).
  bool Want(const std::vector<std::string>& path);
  // Paths registered but not yet filled over the existing contacts.
  bool NeedsFill() const;
  // Fills the unfilled columns from one contact's traits (a JSON object); call for every
  // contact of the workspace, then MarkFilled().
  void Fill(store::ContactId id, std::string_view traits);
  void MarkFilled();

  // The column of `path` (-1: not kept, not filled yet, or spoiled).
  int Find(std::span<const std::string> path) const;
  // Stores a contact's current traits in every filled column (one parse).
  void Set(store::ContactId id, std::string_view traits);
  // Set, unless the contact already has its codes.
  void Touch(store::ContactId id, std::string_view traits);
  // The contact is gone (erased, merged into another): code kAbsent everywhere.
  void Erase(store::ContactId id);

  uint16_t Code(int column, store::ContactId id) const {
    const auto& c = columns_[static_cast<size_t>(column)].codes;
    const auto i = static_cast<size_t>(id);
    return i < c.size() ? c[i] : kAbsent;
  }
  const std::vector<uint16_t>& codes(int column) const {
    return columns_[static_cast<size_t>(column)].codes;
  }
  // The value a code stands for (kAbsent and kNull: Value::Null()).
  const rules::Value& Decode(int column, uint16_t code) const {
    return columns_[static_cast<size_t>(column)].values[code];
  }
  // Codes in use in a column, kAbsent and kNull included: every code is below this.
  size_t Radix(int column) const { return columns_[static_cast<size_t>(column)].values.size(); }

  size_t kept() const;  // columns usable now
  size_t MemoryBytes() const;

 private:
  struct Column {
    std::vector<std::string> path;
    bool filled = false;
    bool spoiled = false;
    std::vector<uint16_t> codes;       // by contact id
    std::vector<rules::Value> values;  // by code; a string points into its dictionary key
    // type tag + bytes -> code (a node's key never moves, so values may point into it)
    std::unordered_map<std::string, uint16_t> dictionary;
  };
  // Stores the value a contact holds at the column's path (null: the traits did not parse).
  void Store(Column& c, store::ContactId id, const rules::Value* value);
  static void Spoil(Column& c);
  void Write(store::ContactId id, std::string_view traits, bool filled_ones);

  std::vector<Column> columns_;
};

}  // namespace nudge::segment
