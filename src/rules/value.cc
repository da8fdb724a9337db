#include "rules/value.h"

#include <cmath>

#include "core/time.h"
#include "rules/json_value.h"

namespace nudge::rules {

static_assert(sizeof(simdjson::dom::element) <= sizeof(Value::json));
static_assert(std::is_trivially_copyable_v<simdjson::dom::element>);

std::string_view TypeName(Type type) {
  switch (type) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "a boolean";
    case Type::kNumber:
      return "a number";
    case Type::kString:
      return "a string";
    case Type::kTime:
      return "a timestamp";
    case Type::kDuration:
      return "a duration";
    case Type::kList:
      return "a list";
    case Type::kJson:
      return "a JSON array or object";
  }
  return "a value";
}

Value FromJson(const simdjson::dom::element& e) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::NULL_VALUE:
      return Value::Null();
    case element_type::BOOL:
      return Value::Bool(bool(e));
    case element_type::INT64:
      return Value::Number(static_cast<double>(int64_t(e)));
    case element_type::UINT64:
      return Value::Number(static_cast<double>(uint64_t(e)));
    case element_type::DOUBLE:
      return Value::Number(double(e));
    case element_type::STRING:
      return Value::String(std::string_view(e));
    case element_type::ARRAY:
    case element_type::OBJECT: {
      Value v;
      v.type = Type::kJson;
      std::memcpy(v.json, &e, sizeof e);
      return v;
    }
  }
  return Value::Null();
}

simdjson::dom::element ToJson(const Value& value) {
  simdjson::dom::element e;
  std::memcpy(&e, value.json, sizeof e);
  return e;
}

Value Lookup(const simdjson::dom::element& root, std::span<const std::string> path) {
  simdjson::dom::element cur = root;
  for (const std::string& step : path) {
    if (cur.type() == simdjson::dom::element_type::OBJECT) {
      if (simdjson::dom::object(cur).at_key(step).get(cur) != simdjson::SUCCESS)
        return Value::Null();
    } else if (cur.type() == simdjson::dom::element_type::ARRAY) {
      size_t index = 0;
      if (step.empty() || step.size() > 9) return Value::Null();
      for (char c : step) {
        if (c < '0' || c > '9') return Value::Null();
        index = index * 10 + static_cast<size_t>(c - '0');
      }
      if (simdjson::dom::array(cur).at(index).get(cur) != simdjson::SUCCESS) return Value::Null();
    } else {
      return Value::Null();
    }
  }
  return FromJson(cur);
}

namespace {

// A time from a time, or from a string holding an ISO-8601 timestamp.
bool AsTime(const Value& v, int64_t& ms) {
  if (v.type == Type::kTime) {
    ms = v.ms;
    return true;
  }
  if (v.type == Type::kString) {
    auto t = core::TryParseIso8601(v.str);
    if (t) ms = *t;
    return t.has_value();
  }
  return false;
}

template <typename T>
int Cmp(T a, T b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Iterates a list or JSON array's elements as Values; stops when f returns true.
template <typename F>
bool AnyElement(const Value& list, F f) {
  if (list.type == Type::kList) {
    for (uint32_t i = 0; i < list.count; ++i)
      if (f(list.items[i])) return true;
    return false;
  }
  if (list.type == Type::kJson) {
    const simdjson::dom::element e = ToJson(list);
    if (e.type() != simdjson::dom::element_type::ARRAY) return false;
    for (simdjson::dom::element item : simdjson::dom::array(e))
      if (f(FromJson(item))) return true;
  }
  return false;
}

size_t Length(const Value& list) {
  if (list.type == Type::kList) return list.count;
  const simdjson::dom::element e = ToJson(list);
  return e.type() == simdjson::dom::element_type::ARRAY ? simdjson::dom::array(e).size() : 0;
}

Value Element(const Value& list, size_t i) {
  if (list.type == Type::kList) return list.items[i];
  simdjson::dom::element item;
  if (simdjson::dom::array(ToJson(list)).at(i).get(item) != simdjson::SUCCESS) return Value::Null();
  return FromJson(item);
}

bool IsSequence(const Value& v) {
  return v.type == Type::kList ||
         (v.type == Type::kJson && ToJson(v).type() == simdjson::dom::element_type::ARRAY);
}

}  // namespace

bool Equal(const Value& a, const Value& b) {
  if (a.type == b.type) {
    switch (a.type) {
      case Type::kNull:
        return true;
      case Type::kBool:
        return a.b == b.b;
      case Type::kNumber:
        return a.num == b.num;
      case Type::kString:
        return a.str == b.str;
      case Type::kTime:
      case Type::kDuration:
        return a.ms == b.ms;
      case Type::kList:
      case Type::kJson:
        break;
    }
  }
  if (IsSequence(a) && IsSequence(b)) {
    const size_t n = Length(a);
    if (n != Length(b)) return false;
    for (size_t i = 0; i < n; ++i)
      if (!Equal(Element(a, i), Element(b, i))) return false;
    return true;
  }
  if ((a.type == Type::kTime && b.type == Type::kString) ||
      (a.type == Type::kString && b.type == Type::kTime)) {
    int64_t x, y;
    return AsTime(a, x) && AsTime(b, y) && x == y;
  }
  return false;
}

int Compare(const Value& a, const Value& b, bool& ordered) {
  ordered = true;
  if (a.type == b.type) {
    switch (a.type) {
      case Type::kNumber:
        if (std::isnan(a.num) || std::isnan(b.num)) break;
        return Cmp(a.num, b.num);
      case Type::kString:
        return Cmp(a.str, b.str);
      case Type::kTime:
      case Type::kDuration:
        return Cmp(a.ms, b.ms);
      default:
        break;
    }
  }
  int64_t x, y;
  if ((a.type == Type::kTime || b.type == Type::kTime) && AsTime(a, x) && AsTime(b, y))
    return Cmp(x, y);
  ordered = false;
  return 0;
}

bool Contains(const Value& haystack, const Value& needle) {
  return AnyElement(haystack, [&](const Value& item) { return Equal(item, needle); });
}

}  // namespace nudge::rules
