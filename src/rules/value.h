// Value: what an expression of the condition language evaluates to. A small, trivially
// copyable view: strings and lists point into memory owned elsewhere (the compiled condition
// for literals, the evaluation environment for contact and event data), so evaluating never
// allocates. A Value is valid only as long as what it points into.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace nudge::rules {

enum class Type : uint8_t {
  kNull,  // missing, or JSON null
  kBool,
  kNumber,
  kString,
  kTime,      // milliseconds since the epoch
  kDuration,  // milliseconds
  kList,      // a literal list: `items`/`count`
  kJson,      // a JSON array or object from a document (see json_value.h)
};

std::string_view TypeName(Type type);

struct Value {
  Type type = Type::kNull;
  bool b = false;
  uint32_t count = 0;  // kList
  double num = 0;      // kNumber
  int64_t ms = 0;      // kTime, kDuration
  std::string_view str;
  const Value* items = nullptr;            // kList
  alignas(8) unsigned char json[16] = {};  // kJson: a simdjson::dom::element, by value

  static Value Null() { return {}; }
  static Value Bool(bool v) {
    Value x;
    x.type = Type::kBool;
    x.b = v;
    return x;
  }
  static Value Number(double v) {
    Value x;
    x.type = Type::kNumber;
    x.num = v;
    return x;
  }
  static Value String(std::string_view v) {
    Value x;
    x.type = Type::kString;
    x.str = v;
    return x;
  }
  static Value Time(int64_t ms) {
    Value x;
    x.type = Type::kTime;
    x.ms = ms;
    return x;
  }
  static Value Duration(int64_t ms) {
    Value x;
    x.type = Type::kDuration;
    x.ms = ms;
    return x;
  }
  static Value List(const Value* items, uint32_t count) {
    Value x;
    x.type = Type::kList;
    x.items = items;
    x.count = count;
    return x;
  }

  bool is_null() const { return type == Type::kNull; }
  // True only for the boolean true; a condition that is not a boolean is false.
  bool truthy() const { return type == Type::kBool && b; }
};

// Equality as the language defines it: numbers by value, strings by bytes, times and
// durations by milliseconds, a time and an ISO-8601 string as times, null equals null, lists
// and JSON arrays element by element; different types are unequal.
bool Equal(const Value& a, const Value& b);

// -1, 0 or 1 when a and b are ordered (numbers, strings, times, durations; a time and an
// ISO-8601 string); `ordered` is false otherwise and the result is meaningless.
int Compare(const Value& a, const Value& b, bool& ordered);

// Membership: `needle` equal to an element of `haystack` (a literal list or a JSON array).
bool Contains(const Value& haystack, const Value& needle);

}  // namespace nudge::rules
