// What a Value points to (hashes, ranges, loop objects) and the Arena that owns it. Private to
// the Liquid engine. An Arena is single-threaded; a Context's arena is only read after building.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "content/liquid.h"

namespace nudge::content {

// Makes and reads the kinds of Value that only the engine builds.
struct ValueAccess {
  static Value Make(ValueKind kind) { return Value(kind); }
  static Value Array(const Value* items, uint32_t n) {
    Value v(ValueKind::kArray);
    v.a_ = items;
    v.n_ = n;
    return v;
  }
  static Value Hash(const internal::HashRep* h, uint32_t n) {
    Value v(ValueKind::kHash);
    v.h_ = h;
    v.n_ = n;
    return v;
  }
  static Value Range(const internal::RangeRep* r) {
    Value v(ValueKind::kRange);
    v.r_ = r;
    return v;
  }
  static Value Object(internal::LoopState* o) {
    Value v(ValueKind::kObject);
    v.o_ = o;
    return v;
  }
  static const Value* items(const Value& v) { return v.a_; }
  static uint32_t count(const Value& v) { return v.n_; }
  static const internal::HashRep* hash(const Value& v) { return v.h_; }
  static const internal::RangeRep* range(const Value& v) { return v.r_; }
  static internal::LoopState* object(const Value& v) { return v.o_; }
  static const char* chars(const Value& v) { return v.s_; }
};

namespace internal {

struct HashEntry {
  const char* key;
  uint32_t key_len;
  Value value;
  std::string_view key_view() const { return {key, key_len}; }
};

// Entries in insertion order; an open-addressing index for hashes past a few entries.
struct HashRep {
  const HashEntry* entries = nullptr;
  uint32_t size = 0;
  uint32_t mask = 0;                // index size - 1; 0 when there is no index
  const uint32_t* index = nullptr;  // entry number + 1; 0 = empty slot
  const HashEntry* Find(std::string_view key) const;
};

struct RangeRep {
  int64_t lo = 0;
  int64_t hi = 0;
  int64_t size() const { return hi >= lo ? hi - lo + 1 : 0; }
};

// forloop and tablerowloop: live objects that a loop updates as it goes.
struct LoopState {
  enum class Kind : uint8_t { kFor, kTablerow };
  Kind kind = Kind::kFor;
  std::string_view name;  // forloop.name: "item-items"
  int64_t length = 0;
  int64_t index = 0;  // 0-based
  LoopState* parent = nullptr;
  int64_t row = 1, col = 1, cols = 0;  // tablerow
};

uint64_t HashBytes(std::string_view s);

// A bump allocator with a byte budget. Alloc returns nullptr (and exceeded() turns true) when
// the budget would be passed; values built from a failed allocation are nil.
class Arena {
 public:
  explicit Arena(size_t limit = SIZE_MAX) : limit_(limit) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* Alloc(size_t bytes) {
    bytes = (bytes + 7) & ~size_t{7};
    if (bytes <= static_cast<size_t>(end_ - cur_)) {
      char* p = cur_;
      cur_ += bytes;
      return p;
    }
    return Grow(bytes);
  }
  template <typename T>
  T* AllocArray(size_t n) {
    if (n > (SIZE_MAX / 2) / sizeof(T)) {
      exceeded_ = true;
      return nullptr;
    }
    return static_cast<T*>(Alloc(n * sizeof(T)));
  }
  // Would `bytes` more fit in the budget? Marks the arena exceeded when not.
  bool Fits(size_t bytes) {
    if (used_ + bytes > limit_ || bytes > limit_) {
      exceeded_ = true;
      return false;
    }
    return true;
  }
  bool exceeded() const { return exceeded_; }
  size_t limit() const { return limit_; }

  Value String(std::string_view s, bool safe = false) {
    if (s.empty()) return Value::Borrowed(std::string_view(), safe);
    if (s.size() > UINT32_MAX) {  // a Value's length is 32 bits
      exceeded_ = true;
      return Value();
    }
    char* p = static_cast<char*>(Alloc(s.size()));
    if (p == nullptr) return Value();
    std::memcpy(p, s.data(), s.size());
    return Value::Borrowed(std::string_view(p, s.size()), safe);
  }
  Value Array(const Value* items, size_t n);
  Value Array(const std::vector<Value>& items) { return Array(items.data(), items.size()); }
  // Entries in order; a later duplicate key replaces the earlier value (Ruby hash semantics).
  Value Hash(const std::vector<HashEntry>& entries);
  Value Range(int64_t lo, int64_t hi);

 private:
  void* Grow(size_t bytes);

  size_t limit_;
  size_t used_ = 0;
  bool exceeded_ = false;
  char* cur_ = nullptr;
  char* end_ = nullptr;
  std::vector<std::unique_ptr<char[]>> blocks_;
};

}  // namespace internal
}  // namespace nudge::content
