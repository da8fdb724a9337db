#include "segment/trait_columns.h"

#include <simdjson.h>

#include <cstring>

#include "rules/json_value.h"

namespace nudge::segment {

bool TraitColumns::Want(const std::vector<std::string>& path) {
  for (const Column& c : columns_)
    if (c.path == path) return false;
  Column c;
  c.path = path;
  c.values = {rules::Value::Null(), rules::Value::Null()};  // kAbsent, kNull
  columns_.push_back(std::move(c));
  return true;
}

bool TraitColumns::NeedsFill() const {
  for (const Column& c : columns_)
    if (!c.filled && !c.spoiled) return true;
  return false;
}

void TraitColumns::Fill(store::ContactId id, std::string_view traits) { Write(id, traits, false); }

void TraitColumns::MarkFilled() {
  for (Column& c : columns_) c.filled = true;
}

int TraitColumns::Find(std::span<const std::string> path) const {
  for (size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    if (!c.filled || c.spoiled || c.path.size() != path.size()) continue;
    if (std::equal(path.begin(), path.end(), c.path.begin())) return static_cast<int>(i);
  }
  return -1;
}

void TraitColumns::Set(store::ContactId id, std::string_view traits) { Write(id, traits, true); }

void TraitColumns::Touch(store::ContactId id, std::string_view traits) {
  for (size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i].filled && !columns_[i].spoiled) {
      if (Code(static_cast<int>(i), id) == kAbsent) Set(id, traits);
      return;
    }
}

void TraitColumns::Erase(store::ContactId id) {
  const auto i = static_cast<size_t>(id);
  for (Column& c : columns_)
    if (i < c.codes.size()) c.codes[i] = kAbsent;
}

void TraitColumns::Write(store::ContactId id, std::string_view traits, bool filled_ones) {
  bool any = false;
  for (const Column& c : columns_) any = any || (!c.spoiled && c.filled == filled_ones);
  if (!any || id < 0) return;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const bool ok = parser.parse(traits.data(), traits.size()).get(doc) == simdjson::SUCCESS;
  for (Column& c : columns_) {
    if (c.spoiled || c.filled != filled_ones) continue;
    if (!ok) {
      Store(c, id, nullptr);
      continue;
    }
    const rules::Value v = rules::Lookup(doc, c.path);
    Store(c, id, &v);
  }
}

void TraitColumns::Store(Column& c, store::ContactId id, const rules::Value* value) {
  const auto i = static_cast<size_t>(id);
  uint16_t code = kNull;
  if (value) {
    const rules::Value& v = *value;
    // Most trait changes leave most kept paths as they were: no dictionary lookup then.
    if (i < c.codes.size() && c.codes[i] > kNull) {
      const rules::Value& held = c.values[c.codes[i]];
      if (held.type == v.type &&
          ((v.type == rules::Type::kBool && held.b == v.b) ||
           (v.type == rules::Type::kNumber && std::memcmp(&held.num, &v.num, sizeof v.num) == 0) ||
           (v.type == rules::Type::kString && held.str == v.str)))
        return;
    }
    thread_local std::string key;  // reused: no allocation once it has grown
    key.clear();
    switch (v.type) {
      case rules::Type::kNull:
        break;
      case rules::Type::kBool:
        key.assign(v.b ? "b1" : "b0");
        break;
      case rules::Type::kNumber:
        key.assign("n");
        key.append(reinterpret_cast<const char*>(&v.num), sizeof v.num);
        break;
      case rules::Type::kString:
        key.assign("s");
        key.append(v.str);
        break;
      default:  // an array or an object: not a column's business
        Spoil(c);
        return;
    }
    if (!key.empty()) {
      auto it = c.dictionary.find(key);
      if (it != c.dictionary.end()) {
        code = it->second;
      } else {
        if (c.values.size() >= kMaxDistinct) {
          Spoil(c);
          return;
        }
        code = static_cast<uint16_t>(c.values.size());
        const std::string& held = c.dictionary.emplace(key, code).first->first;
        c.values.push_back(v.type == rules::Type::kString
                               ? rules::Value::String(std::string_view(held).substr(1))
                               : v);
      }
    }
  }
  if (i >= c.codes.size()) c.codes.resize(std::max(i + 1, c.codes.size() * 3 / 2 + 16), kAbsent);
  c.codes[i] = code;
}

void TraitColumns::Spoil(Column& c) {
  c.spoiled = true;
  std::vector<uint16_t>().swap(c.codes);
  std::vector<rules::Value>().swap(c.values);
  std::unordered_map<std::string, uint16_t>().swap(c.dictionary);
}

size_t TraitColumns::kept() const {
  size_t n = 0;
  for (const Column& c : columns_) n += c.filled && !c.spoiled;
  return n;
}

size_t TraitColumns::MemoryBytes() const {
  size_t n = sizeof(*this) + columns_.capacity() * sizeof(Column);
  for (const Column& c : columns_) {
    n += c.codes.capacity() * sizeof(uint16_t) + c.values.capacity() * sizeof(rules::Value);
    // a node per entry: the key string and the code, plus a bucket pointer
    for (const auto& [k, v] : c.dictionary)
      n += sizeof(std::string) + (k.size() > 15 ? k.capacity() : 0) + 24;
  }
  return n;
}

}  // namespace nudge::segment
