#include "content/internal/ruby.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "content/internal/unicode_case.h"
#include "content/internal/value_rep.h"

namespace nudge::content::internal {
namespace {

using u128 = unsigned __int128;

constexpr u128 Pow10(int n) {
  u128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}
constexpr int kMaxDigits = 38;  // 10^38 < 2^128

struct Pow10Table {
  u128 v[kMaxDigits + 1];
  constexpr Pow10Table() : v() {
    for (int i = 0; i <= kMaxDigits; ++i) v[i] = Pow10(i);
  }
};
constexpr Pow10Table kPow10;

void AppendU128(std::string& out, u128 x) {
  char buf[48];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + static_cast<int>(x % 10));
    x /= 10;
  } while (x != 0);
  while (n > 0) out += buf[--n];
}

// The shortest decimal digits that read back as d (d finite, non-zero): digits and the
// exponent of the first digit (d = 0.DIGITS * 10^decpt).
void ShortestDigits(double d, std::string& digits, int& decpt) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), std::fabs(d), std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));
  const size_t e = s.find('e');
  digits.clear();
  for (size_t i = 0; i < e; ++i) {
    if (s[i] != '.') digits += s[i];
  }
  int exp10 = 0;
  std::from_chars(s.data() + e + 1 + (s[e + 1] == '+' ? 1 : 0), s.data() + s.size(), exp10);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  decpt = exp10 + 1;
}

uint32_t DecodeUtf8(std::string_view s, size_t& i, bool& ok) {
  const auto c = static_cast<unsigned char>(s[i]);
  ok = true;
  if (c < 0x80) {
    ++i;
    return c;
  }
  int n = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3;
    cp = c & 0x07;
  } else {
    ok = false;
    ++i;
    return c;
  }
  if (i + static_cast<size_t>(n) >= s.size()) {
    ok = false;
    ++i;
    return c;
  }
  for (int k = 1; k <= n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      ok = false;
      ++i;
      return c;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
  if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ok = false;
    ++i;
    return c;
  }
  i += static_cast<size_t>(n) + 1;
  return cp;
}

const char* FindMapping(const CaseMapping* table, size_t size, uint32_t cp) {
  size_t lo = 0, hi = size;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (table[mid].cp < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < size && table[lo].cp == cp ? table[lo].to : nullptr;
}

enum class CaseOp { kUpper, kLower, kTitle };

void MapCase(std::string_view s, std::string& out, CaseOp op, bool first_only) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      char m = static_cast<char>(c);
      if (op == CaseOp::kLower) {
        if (c >= 'A' && c <= 'Z') m = static_cast<char>(c + 32);
      } else if (c >= 'a' && c <= 'z') {
        m = static_cast<char>(c - 32);
      }
      out += m;
      ++i;
    } else {
      const size_t start = i;
      bool ok = true;
      const uint32_t cp = DecodeUtf8(s, i, ok);
      const char* to = nullptr;
      if (ok) {
        if (op == CaseOp::kTitle) to = FindMapping(kTitle, kTitleSize, cp);
        if (to == nullptr && op != CaseOp::kLower) to = FindMapping(kUpper, kUpperSize, cp);
        if (op == CaseOp::kLower) to = FindMapping(kLower, kLowerSize, cp);
      }
      if (to != nullptr) {
        out += to;
      } else {
        out.append(s.data() + start, i - start);
      }
    }
    if (first_only) {
      Downcase(s.substr(i), out);
      return;
    }
  }
}

bool IsPrintable(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7F) return false;
  if (cp >= 0x80 && cp < 0xA0) return false;
  if (cp == 0x2028 || cp == 0x2029) return false;
  return true;
}

void AppendHex(std::string& out, uint32_t v, int width) {
  static const char kHex[] = "0123456789ABCDEF";
  char buf[8];
  int n = 0;
  do {
    buf[n++] = kHex[v & 0xF];
    v >>= 4;
  } while (v != 0 || n < width);
  while (n > 0) out += buf[--n];
}

const char* ObjectName(const Value& v) {
  const LoopState* o = ValueAccess::object(v);
  return o != nullptr && o->kind == LoopState::Kind::kTablerow ? "Liquid::TablerowloopDrop"
                                                               : "Liquid::ForloopDrop";
}

void AppendRange(std::string& out, const Value& v) {
  const RangeRep* r = ValueAccess::range(v);
  AppendInt(out, r->lo);
  out += "..";
  AppendInt(out, r->hi);
}

bool NumEqual(const Value& a, const Value& b) {
  if (a.kind() == ValueKind::kInt && b.kind() == ValueKind::kInt) return a.AsInt() == b.AsInt();
  const double x = a.kind() == ValueKind::kInt ? static_cast<double>(a.AsInt()) : a.AsFloat();
  const double y = b.kind() == ValueKind::kInt ? static_cast<double>(b.AsInt()) : b.AsFloat();
  if (a.kind() == ValueKind::kInt && b.kind() == ValueKind::kFloat) {
    // Ruby compares an Integer with a Float exactly.
    if (!std::isfinite(y) || y != std::trunc(y)) return false;
    if (y >= 9.3e18 || y <= -9.3e18) return false;
    return a.AsInt() == static_cast<int64_t>(y);
  }
  if (a.kind() == ValueKind::kFloat && b.kind() == ValueKind::kInt) return NumEqual(b, a);
  return x == y;
}

bool IsNum(const Value& v) { return v.kind() == ValueKind::kInt || v.kind() == ValueKind::kFloat; }

std::optional<int> NumCompare(const Value& a, const Value& b) {
  if (a.kind() == ValueKind::kInt && b.kind() == ValueKind::kInt) {
    return a.AsInt() < b.AsInt() ? -1 : (a.AsInt() > b.AsInt() ? 1 : 0);
  }
  const long double x =
      a.kind() == ValueKind::kInt ? static_cast<long double>(a.AsInt()) : a.AsFloat();
  const long double y =
      b.kind() == ValueKind::kInt ? static_cast<long double>(b.AsInt()) : b.AsFloat();
  if (std::isnan(x) || std::isnan(y)) return std::nullopt;
  return x < y ? -1 : (x > y ? 1 : 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Printing

void AppendInt(std::string& out, int64_t i) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), i);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void AppendFloat(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
    return;
  }
  if (std::isinf(d)) {
    out += d < 0 ? "-Infinity" : "Infinity";
    return;
  }
  if (d == 0) {
    out += std::signbit(d) ? "-0.0" : "0.0";
    return;
  }
  std::string digits;
  int decpt = 0;
  ShortestDigits(d, digits, decpt);
  if (d < 0) out += '-';
  const int digs = static_cast<int>(digits.size());
  if (decpt > 0 && (decpt <= 15 || decpt < digs)) {
    if (decpt >= digs) {
      out += digits;
      out.append(static_cast<size_t>(decpt - digs), '0');
      out += ".0";
    } else {
      out.append(digits, 0, static_cast<size_t>(decpt));
      out += '.';
      out.append(digits, static_cast<size_t>(decpt), std::string::npos);
    }
  } else if (decpt <= 0 && decpt > -4) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else {
    out += digits[0];
    out += '.';
    if (digs > 1) {
      out.append(digits, 1, std::string::npos);
    } else {
      out += '0';
    }
    out += 'e';
    const int e = decpt - 1;
    out += e < 0 ? '-' : '+';
    const int a = e < 0 ? -e : e;
    if (a < 10) out += '0';
    AppendInt(out, a);
  }
}

void AppendJoin(std::string& out, const Value& array, std::string_view glue) {
  const Value* items = ValueAccess::items(array);
  const uint32_t n = ValueAccess::count(array);
  for (uint32_t i = 0; i < n; ++i) {
    if (i > 0) out += glue;
    const Value& e = items[i];
    if (e.kind() == ValueKind::kArray) {
      AppendJoin(out, e, glue);
    } else {
      AppendToS(out, e);
    }
  }
}

void AppendOutput(std::string& out, const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
      return;
    case ValueKind::kString:
      out += v.AsString();
      return;
    case ValueKind::kArray:
      AppendJoin(out, v, "");
      return;
    default:
      AppendToS(out, v);
  }
}

void AppendToS(std::string& out, const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
      return;
    case ValueKind::kBool:
      out += v.AsBool() ? "true" : "false";
      return;
    case ValueKind::kInt:
      AppendInt(out, v.AsInt());
      return;
    case ValueKind::kFloat:
      AppendFloat(out, v.AsFloat());
      return;
    case ValueKind::kString:
      out += v.AsString();
      return;
    case ValueKind::kRange:
      AppendRange(out, v);
      return;
    case ValueKind::kObject:
      out += ObjectName(v);
      return;
    case ValueKind::kArray:
    case ValueKind::kHash:
      AppendInspect(out, v);
      return;
  }
}

void AppendInspectString(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    const auto uc = static_cast<unsigned char>(c);
    if (uc < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\v':
          out += "\\v";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\a':
          out += "\\a";
          break;
        case 0x1B:
          out += "\\e";
          break;
        case '#':
          if (i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '$' || s[i + 1] == '@')) {
            out += "\\#";
          } else {
            out += '#';
          }
          break;
        default:
          if (uc < 0x20 || uc == 0x7F) {
            out += "\\u";
            AppendHex(out, uc, 4);
          } else {
            out += c;
          }
      }
      ++i;
      continue;
    }
    const size_t start = i;
    bool ok = true;
    const uint32_t cp = DecodeUtf8(s, i, ok);
    if (!ok) {
      out += "\\x";
      AppendHex(out, uc, 2);
    } else if (!IsPrintable(cp)) {
      out += "\\u";
      if (cp > 0xFFFF) {
        out += '{';
        AppendHex(out, cp, 1);
        out += '}';
      } else {
        AppendHex(out, cp, 4);
      }
    } else {
      out.append(s.data() + start, i - start);
    }
  }
  out += '"';
}

void AppendInspect(std::string& out, const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
      out += "nil";
      return;
    case ValueKind::kString:
      AppendInspectString(out, v.AsString());
      return;
    case ValueKind::kArray: {
      out += '[';
      const Value* items = ValueAccess::items(v);
      for (uint32_t i = 0; i < ValueAccess::count(v); ++i) {
        if (i > 0) out += ", ";
        AppendInspect(out, items[i]);
      }
      out += ']';
      return;
    }
    case ValueKind::kHash: {
      const HashRep* h = ValueAccess::hash(v);
      out += '{';
      for (uint32_t i = 0; i < h->size; ++i) {
        if (i > 0) out += ", ";
        AppendInspectString(out, h->entries[i].key_view());
        out += "=>";
        AppendInspect(out, h->entries[i].value);
      }
      out += '}';
      return;
    }
    default:
      AppendToS(out, v);
  }
}

std::string ToS(const Value& v) {
  std::string out;
  AppendToS(out, v);
  return out;
}

std::string_view ClassName(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
      return "NilClass";
    case ValueKind::kBool:
      return v.AsBool() ? "TrueClass" : "FalseClass";
    case ValueKind::kInt:
      return "Integer";
    case ValueKind::kFloat:
      return "Float";
    case ValueKind::kString:
      return "String";
    case ValueKind::kArray:
      return "Array";
    case ValueKind::kHash:
      return "Hash";
    case ValueKind::kRange:
      return "Range";
    case ValueKind::kObject:
      return ObjectName(v);
  }
  return "Object";
}

std::string CmpErrName(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
    case ValueKind::kBool:
    case ValueKind::kInt:
    case ValueKind::kFloat: {
      std::string s;
      AppendInspect(s, v);
      return s;
    }
    default:
      return std::string(ClassName(v));
  }
}

// ---------------------------------------------------------------------------------------------
// Comparing

bool Equal(const Value& a, const Value& b) {
  if (IsNum(a) && IsNum(b)) return NumEqual(a, b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kNil:
      return true;
    case ValueKind::kBool:
      return a.AsBool() == b.AsBool();
    case ValueKind::kString:
      return a.AsString() == b.AsString();
    case ValueKind::kArray: {
      if (ValueAccess::count(a) != ValueAccess::count(b)) return false;
      for (uint32_t i = 0; i < ValueAccess::count(a); ++i) {
        if (!Equal(ValueAccess::items(a)[i], ValueAccess::items(b)[i])) return false;
      }
      return true;
    }
    case ValueKind::kHash: {
      const HashRep* x = ValueAccess::hash(a);
      const HashRep* y = ValueAccess::hash(b);
      if (x->size != y->size) return false;
      for (uint32_t i = 0; i < x->size; ++i) {
        const HashEntry* e = y->Find(x->entries[i].key_view());
        if (e == nullptr || !Equal(x->entries[i].value, e->value)) return false;
      }
      return true;
    }
    case ValueKind::kRange:
      return ValueAccess::range(a)->lo == ValueAccess::range(b)->lo &&
             ValueAccess::range(a)->hi == ValueAccess::range(b)->hi;
    case ValueKind::kObject:
      return ValueAccess::object(a) == ValueAccess::object(b);
    default:
      return false;
  }
}

bool Eql(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kInt:
      return a.AsInt() == b.AsInt();
    case ValueKind::kFloat:
      return a.AsFloat() == b.AsFloat() || (std::isnan(a.AsFloat()) && std::isnan(b.AsFloat()));
    case ValueKind::kArray: {
      if (ValueAccess::count(a) != ValueAccess::count(b)) return false;
      for (uint32_t i = 0; i < ValueAccess::count(a); ++i) {
        if (!Eql(ValueAccess::items(a)[i], ValueAccess::items(b)[i])) return false;
      }
      return true;
    }
    case ValueKind::kHash: {
      const HashRep* x = ValueAccess::hash(a);
      const HashRep* y = ValueAccess::hash(b);
      if (x->size != y->size) return false;
      for (uint32_t i = 0; i < x->size; ++i) {
        const HashEntry* e = y->Find(x->entries[i].key_view());
        if (e == nullptr || !Eql(x->entries[i].value, e->value)) return false;
      }
      return true;
    }
    default:
      return Equal(a, b);
  }
}

std::optional<int> Compare(const Value& a, const Value& b) {
  if (IsNum(a) && IsNum(b)) return NumCompare(a, b);
  if (a.kind() != b.kind()) return std::nullopt;
  switch (a.kind()) {
    case ValueKind::kString: {
      const int c = a.AsString().compare(b.AsString());
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    case ValueKind::kArray: {
      const uint32_t n = std::min(ValueAccess::count(a), ValueAccess::count(b));
      for (uint32_t i = 0; i < n; ++i) {
        auto c = Compare(ValueAccess::items(a)[i], ValueAccess::items(b)[i]);
        if (!c) return std::nullopt;
        if (*c != 0) return c;
      }
      const uint32_t x = ValueAccess::count(a), y = ValueAccess::count(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    default:
      if (Equal(a, b)) return 0;
      return std::nullopt;
  }
}

// ---------------------------------------------------------------------------------------------
// Decimal

Decimal Decimal::Approx(double d) {
  Decimal r;
  r.approx_ = true;
  r.dbl_ = d;
  r.neg_ = std::signbit(d);
  return r;
}

Decimal Decimal::FromInt(int64_t i) {
  Decimal r;
  r.neg_ = i < 0;
  r.coef_ = i < 0 ? static_cast<u128>(-(i + 1)) + 1 : static_cast<u128>(i);
  return r;
}

Decimal Decimal::FromDouble(double d) {
  if (!std::isfinite(d)) return Approx(d);
  Decimal r;
  r.neg_ = std::signbit(d);
  if (d == 0) return r;
  std::string digits;
  int decpt = 0;
  ShortestDigits(d, digits, decpt);
  for (char c : digits) r.coef_ = r.coef_ * 10 + static_cast<unsigned>(c - '0');
  r.exp_ = decpt - static_cast<int>(digits.size());
  return r;
}

std::optional<Decimal> Decimal::FromText(std::string_view text) {
  text = Strip(text);
  Decimal r;
  size_t i = 0;
  if (i < text.size() && text[i] == '-') {
    r.neg_ = true;
    ++i;
  }
  bool any = false, dot = false;
  int digits = 0;
  int32_t exp = 0;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.' && !dot) {
      dot = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    any = true;
    if (r.coef_ == 0 && c == '0') {
      if (dot) --exp;
      continue;
    }
    if (digits < kMaxDigits) {
      r.coef_ = r.coef_ * 10 + static_cast<unsigned>(c - '0');
      ++digits;
      if (dot) --exp;
    } else if (!dot) {
      ++exp;  // digits past the precision are dropped
    }
  }
  if (!any) return std::nullopt;
  r.exp_ = exp;
  return r;
}

bool Decimal::IsZero() const { return approx_ ? dbl_ == 0 : coef_ == 0; }

double Decimal::ToDouble() const {
  if (approx_) return dbl_;
  if (coef_ == 0) return neg_ ? -0.0 : 0.0;
  std::string s;
  if (neg_) s += '-';
  AppendU128(s, coef_);
  s += 'e';
  AppendInt(s, exp_);
  return std::strtod(s.c_str(), nullptr);
}

namespace {
// Scales x by 10^n into *out; false on overflow.
bool ScaleUp(u128 x, int n, u128* out) {
  if (x == 0) {
    *out = 0;
    return true;
  }
  if (n > kMaxDigits) return false;
  return !__builtin_mul_overflow(x, kPow10.v[n], out);
}
}  // namespace

Decimal Decimal::Add(const Decimal& a, const Decimal& b) {
  if (a.approx_ || b.approx_) return Approx(a.ToDouble() + b.ToDouble());
  const int32_t e = std::min(a.exp_, b.exp_);
  u128 x = 0, y = 0;
  if (!ScaleUp(a.coef_, a.exp_ - e, &x) || !ScaleUp(b.coef_, b.exp_ - e, &y)) {
    return Approx(a.ToDouble() + b.ToDouble());
  }
  Decimal r;
  r.exp_ = e;
  if (a.neg_ == b.neg_) {
    if (__builtin_add_overflow(x, y, &r.coef_)) return Approx(a.ToDouble() + b.ToDouble());
    r.neg_ = a.neg_;
  } else if (x >= y) {
    r.coef_ = x - y;
    r.neg_ = a.neg_;
  } else {
    r.coef_ = y - x;
    r.neg_ = b.neg_;
  }
  // A zero keeps its sign as BigDecimal's (and IEEE's) does: -0 + -0 is -0, x + -x is 0.
  if (r.coef_ == 0) r.neg_ = a.neg_ && b.neg_;
  return r;
}

Decimal Decimal::Sub(const Decimal& a, const Decimal& b) {
  Decimal nb = b;
  nb.neg_ = !b.neg_;
  if (nb.approx_) nb.dbl_ = -b.dbl_;
  return Add(a, nb);
}

Decimal Decimal::Mul(const Decimal& a, const Decimal& b) {
  if (a.approx_ || b.approx_) return Approx(a.ToDouble() * b.ToDouble());
  Decimal r;
  if (__builtin_mul_overflow(a.coef_, b.coef_, &r.coef_)) {
    return Approx(a.ToDouble() * b.ToDouble());
  }
  r.exp_ = a.exp_ + b.exp_;
  r.neg_ = a.neg_ != b.neg_;  // 0 * -1.0 is -0.0, as in Ruby
  return r;
}

Decimal Decimal::Div(const Decimal& a, const Decimal& b) {
  if (b.IsZero()) {
    if (a.IsZero()) return Approx(std::nan(""));
    return Approx(a.neg_ != b.neg_ ? -HUGE_VAL : HUGE_VAL);
  }
  if (a.approx_ || b.approx_) return Approx(a.ToDouble() / b.ToDouble());
  if (a.coef_ == 0) {
    Decimal zero;
    zero.neg_ = a.neg_ != b.neg_;  // 0 / -1.0 is -0.0, as in Ruby
    return zero;
  }
  u128 num = a.coef_, den = b.coef_;
  int32_t exp = a.exp_ - b.exp_;
  // Keep den small enough that the remainder times 10 cannot overflow.
  while (den >= kPow10.v[37]) {
    den /= 10;
    ++exp;
  }
  std::string digits;
  u128 q = num / den, r = num % den;
  if (q != 0) AppendU128(digits, q);
  int frac = 0;
  while ((digits.size() < 40 || digits.empty()) && r != 0) {
    r *= 10;
    const u128 d = r / den;
    r %= den;
    if (!(digits.empty() && d == 0)) digits += static_cast<char>('0' + static_cast<int>(d));
    ++frac;
  }
  if (r != 0) {
    digits += '1';  // sticky: the true value is past these digits
    ++frac;
  }
  std::string s;
  if (a.neg_ != b.neg_) s += '-';
  s += digits;
  s += 'e';
  AppendInt(s, static_cast<int64_t>(exp) - frac);
  return Approx(std::strtod(s.c_str(), nullptr));
}

std::optional<Decimal> Decimal::Mod(const Decimal& a, const Decimal& b) {
  if (b.IsZero()) return std::nullopt;
  auto approx = [&]() {
    const double x = a.ToDouble(), y = b.ToDouble();
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Approx(m);
  };
  if (a.approx_ || b.approx_) return approx();
  const int32_t e = std::min(a.exp_, b.exp_);
  u128 x = 0, y = 0;
  if (!ScaleUp(a.coef_, a.exp_ - e, &x) || !ScaleUp(b.coef_, b.exp_ - e, &y)) return approx();
  Decimal r;
  r.exp_ = e;
  r.coef_ = x % y;
  if (r.coef_ != 0 && a.neg_ != b.neg_) r.coef_ = y - r.coef_;
  r.neg_ = b.neg_ && r.coef_ != 0;
  return r;
}

int Decimal::Cmp(const Decimal& a, const Decimal& b) {
  const Decimal d = Sub(a, b);
  if (d.IsZero()) return 0;
  if (d.approx_) return d.dbl_ < 0 ? -1 : 1;
  return d.neg_ ? -1 : 1;
}

Decimal Decimal::Abs() const {
  Decimal r = *this;
  r.neg_ = false;
  if (r.approx_) r.dbl_ = std::fabs(dbl_);
  return r;
}

Decimal Decimal::Round(int64_t digits) const {
  if (approx_) {
    if (!std::isfinite(dbl_)) return *this;
    return FromDouble(dbl_).approx_ ? *this : FromDouble(dbl_).Round(digits);
  }
  const int64_t target = -digits;
  if (exp_ >= target) return *this;
  const int64_t k = target - exp_;
  Decimal r;
  r.neg_ = neg_;
  r.exp_ = static_cast<int32_t>(target);
  if (k > kMaxDigits) {
    r.coef_ = 0;
  } else {
    const u128 p = kPow10.v[k];
    u128 q = coef_ / p;
    const u128 rem = coef_ % p;
    if (rem >= p - rem) ++q;  // rem * 2 >= p, half away from zero
    r.coef_ = q;
  }
  return r;  // -0.04 rounded to 1 digit is -0.0, as BigDecimal#round gives
}

std::optional<int64_t> Decimal::Floor() const {
  if (approx_) {
    if (!std::isfinite(dbl_)) return std::nullopt;
    const double f = std::floor(dbl_);
    if (f >= 9.2e18 || f <= -9.2e18) return std::nullopt;
    return static_cast<int64_t>(f);
  }
  u128 q = 0;
  bool frac = false;
  if (exp_ >= 0) {
    if (!ScaleUp(coef_, exp_, &q)) return std::nullopt;
  } else if (-exp_ > kMaxDigits) {
    frac = coef_ != 0;
  } else {
    q = coef_ / kPow10.v[-exp_];
    frac = coef_ % kPow10.v[-exp_] != 0;
  }
  if (neg_ && frac) ++q;
  if (q > static_cast<u128>(INT64_MAX)) return std::nullopt;
  return neg_ ? -static_cast<int64_t>(q) : static_cast<int64_t>(q);
}

std::optional<int64_t> Decimal::Ceil() const {
  Decimal n = *this;
  n.neg_ = !neg_;
  if (n.approx_) n.dbl_ = -dbl_;
  auto f = n.Floor();
  if (!f) return std::nullopt;
  return -*f;
}

// ---------------------------------------------------------------------------------------------
// Conversions

int64_t StringToI(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsRubySpace(s[i])) ++i;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    neg = s[i] == '-';
    ++i;
  }
  u128 v = 0;
  bool digit_before = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      if (v < static_cast<u128>(1) << 64) v = v * 10 + static_cast<unsigned>(c - '0');
      digit_before = true;
    } else if (c == '_' && digit_before && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
      digit_before = false;
    } else {
      break;
    }
  }
  if (v > static_cast<u128>(INT64_MAX)) return neg ? INT64_MIN : INT64_MAX;
  return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

std::optional<int64_t> StrictInteger(std::string_view s) {
  s = Strip(s);
  if (s.find('\0') != std::string_view::npos) return std::nullopt;
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    neg = s[i] == '-';
    ++i;
  }
  int base = 10;
  if (i + 1 < s.size() && s[i] == '0') {
    const char p = s[i + 1];
    if (p == 'x' || p == 'X') {
      base = 16;
      i += 2;
    } else if (p == 'b' || p == 'B') {
      base = 2;
      i += 2;
    } else if (p == 'o' || p == 'O') {
      base = 8;
      i += 2;
    } else if (p == 'd' || p == 'D') {
      base = 10;
      i += 2;
    } else if ((p >= '0' && p <= '9') || p == '_') {
      base = 8;
      i += 1;
    }
  }
  if (i >= s.size()) return std::nullopt;
  u128 v = 0;
  bool last_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int d = -1;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'z') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'Z') {
      d = c - 'A' + 10;
    } else if (c == '_') {
      if (!last_digit || i + 1 >= s.size()) return std::nullopt;
      last_digit = false;
      continue;
    }
    if (d < 0 || d >= base) return std::nullopt;
    v = v * static_cast<unsigned>(base) + static_cast<unsigned>(d);
    if (v > static_cast<u128>(INT64_MAX) + 1) return std::nullopt;
    last_digit = true;
  }
  if (!last_digit) return std::nullopt;
  if (!neg && v > static_cast<u128>(INT64_MAX)) return std::nullopt;
  return neg ? static_cast<int64_t>(-static_cast<__int128>(v)) : static_cast<int64_t>(v);
}

std::optional<int64_t> ToInteger(const Value& v) {
  if (v.kind() == ValueKind::kInt) return v.AsInt();
  if (v.kind() == ValueKind::kString) return StrictInteger(v.AsString());
  return StrictInteger(ToS(v));
}

namespace {
bool LooksDecimal(std::string_view s) {
  s = Strip(s);
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const size_t a = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == a || i >= s.size() || s[i] != '.') return false;
  ++i;
  const size_t b = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i > b && i == s.size();
}
}  // namespace

Number ToNumber(const Value& v) {
  Number n;
  switch (v.kind()) {
    case ValueKind::kInt:
      n.i = v.AsInt();
      return n;
    case ValueKind::kFloat:
      n.is_int = false;
      n.d = Decimal::FromDouble(v.AsFloat());
      return n;
    case ValueKind::kString: {
      const std::string_view s = v.AsString();
      if (LooksDecimal(s)) {
        if (auto d = Decimal::FromText(s)) {
          n.is_int = false;
          n.d = *d;
          return n;
        }
      }
      n.i = StringToI(s);
      return n;
    }
    default:
      return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Strings

std::string_view LStrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (IsRubySpace(s[i]) || s[i] == '\0')) ++i;
  return s.substr(i);
}

std::string_view RStrip(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && (IsRubySpace(s[n - 1]) || s[n - 1] == '\0')) --n;
  return s.substr(0, n);
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

size_t Utf8Offset(std::string_view s, size_t index) {
  size_t i = 0;
  while (i < s.size() && index > 0) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
    --index;
  }
  return i;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    bool ok = true;
    DecodeUtf8(s, i, ok);
    if (!ok) return false;
  }
  return true;
}

void Upcase(std::string_view s, std::string& out) { MapCase(s, out, CaseOp::kUpper, false); }
void Downcase(std::string_view s, std::string& out) { MapCase(s, out, CaseOp::kLower, false); }
void Capitalize(std::string_view s, std::string& out) {
  if (s.empty()) return;
  MapCase(s, out, CaseOp::kTitle, true);
}

int CaseCmp(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return x < y ? -1 : 1;
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

std::vector<std::string_view> Split(std::string_view s, std::string_view pattern, int64_t limit) {
  std::vector<std::string_view> out;
  if (s.empty()) return out;
  if (limit == 1) {
    out.push_back(s);
    return out;
  }
  auto room = [&]() { return limit <= 0 || static_cast<int64_t>(out.size()) < limit - 1; };
  if (pattern == " ") {
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsRubySpace(s[i])) ++i;
      if (i >= s.size()) break;
      if (!room()) {
        out.push_back(s.substr(i));
        return out;
      }
      const size_t start = i;
      while (i < s.size() && !IsRubySpace(s[i])) ++i;
      out.push_back(s.substr(start, i - start));
    }
  } else if (pattern.empty()) {
    size_t i = 0;
    while (i < s.size()) {
      if (!room()) {
        out.push_back(s.substr(i));
        return out;
      }
      const size_t start = i;
      ++i;
      while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
      out.push_back(s.substr(start, i - start));
    }
  } else {
    size_t start = 0;
    for (;;) {
      if (!room()) {
        out.push_back(s.substr(start));
        break;
      }
      const size_t at = s.find(pattern, start);
      if (at == std::string_view::npos) {
        out.push_back(s.substr(start));
        break;
      }
      out.push_back(s.substr(start, at - start));
      start = at + pattern.size();
    }
  }
  if (limit == 0) {
    while (!out.empty() && out.back().empty()) out.pop_back();
  }
  return out;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

}  // namespace nudge::content::internal
