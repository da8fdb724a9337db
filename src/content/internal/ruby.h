// Ruby's behaviour where Liquid inherits it: how values print (to_s, inspect, Float#to_s),
// compare (==, <=>), convert (String#to_i, Integer(), Liquid's to_number with BigDecimal
// arithmetic), and how strings are cased, stripped and split. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "content/liquid.h"

namespace nudge::content::internal {

// ---- printing
void AppendInt(std::string& out, int64_t i);
void AppendFloat(std::string& out, double d);  // Float#to_s: 1.0, 0.0001, 1.0e-05, 1.0e+16
// How {{ v }} prints it: nil is empty, arrays are joined (recursively, no separator), hashes
// and the rest as to_s.
void AppendOutput(std::string& out, const Value& v);
// Ruby's to_s: as AppendOutput except arrays, which print as inspect ([1, "a", nil]).
void AppendToS(std::string& out, const Value& v);
void AppendInspect(std::string& out, const Value& v);
void AppendInspectString(std::string& out, std::string_view s);
// Array#join(glue) over already flattened or nested arrays.
void AppendJoin(std::string& out, const Value& array, std::string_view glue);
std::string ToS(const Value& v);
// Ruby's class name of a value, as comparison errors name it ("Integer", "String").
std::string_view ClassName(const Value& v);
// How Ruby names the right-hand side in "comparison of X with Y failed": the value itself for
// nil, booleans and numbers, the class name otherwise.
std::string CmpErrName(const Value& v);

// ---- comparing
bool Equal(const Value& a, const Value& b);  // ==
// <=>; nullopt when Ruby returns nil (different kinds, hashes that differ, ...).
std::optional<int> Compare(const Value& a, const Value& b);
// eql? for uniq: like == but 1 and 1.0 differ.
bool Eql(const Value& a, const Value& b);

// ---- numbers
// A BigDecimal-like exact decimal (coefficient * 10^exponent), enough for Liquid's math on
// floats: Ruby converts floats through their shortest text, so 0.1 + 0.2 is 0.3. Falls back
// to double arithmetic when a coefficient would pass 38 digits.
class Decimal {
 public:
  static Decimal FromInt(int64_t i);
  static Decimal FromDouble(double d);
  static std::optional<Decimal> FromText(std::string_view text);  // "-12.5"
  double ToDouble() const;
  bool IsZero() const;
  bool IsNegative() const { return neg_ && !IsZero(); }

  static Decimal Add(const Decimal& a, const Decimal& b);
  static Decimal Sub(const Decimal& a, const Decimal& b);
  static Decimal Mul(const Decimal& a, const Decimal& b);
  static Decimal Div(const Decimal& a, const Decimal& b);  // b == 0: +-Infinity or NaN
  static std::optional<Decimal> Mod(const Decimal& a, const Decimal& b);  // nullopt: b == 0
  static int Cmp(const Decimal& a, const Decimal& b);
  Decimal Abs() const;
  Decimal Round(int64_t digits) const;  // half away from zero, as BigDecimal#round
  // floor/ceil as an integer; nullopt when it does not fit in int64 or is not finite.
  std::optional<int64_t> Floor() const;
  std::optional<int64_t> Ceil() const;

 private:
  static Decimal Approx(double d);
  bool neg_ = false;
  bool approx_ = false;  // value is dbl_ (overflow or non-finite)
  unsigned __int128 coef_ = 0;
  int32_t exp_ = 0;
  double dbl_ = 0;
};

// Liquid's Utils.to_number: integers stay integers; floats and "1.5"-like strings become
// decimals; other strings go through String#to_i; everything else is 0.
struct Number {
  bool is_int = true;
  int64_t i = 0;
  Decimal d;
  Decimal AsDecimal() const { return is_int ? Decimal::FromInt(i) : d; }
};
Number ToNumber(const Value& v);
// String#to_i: leading whitespace, sign, digits with single underscores; 0 when none.
int64_t StringToI(std::string_view s);
// Kernel#Integer(str) as Liquid's Utils.to_integer uses it (base prefixes, underscores,
// surrounding whitespace); nullopt where Ruby raises "invalid integer".
std::optional<int64_t> StrictInteger(std::string_view s);
// Utils.to_integer for any value.
std::optional<int64_t> ToInteger(const Value& v);

// ---- strings
inline bool IsRubySpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
// String#strip/lstrip/rstrip: whitespace and NUL.
std::string_view LStrip(std::string_view s);
std::string_view RStrip(std::string_view s);
inline std::string_view Strip(std::string_view s) { return RStrip(LStrip(s)); }
size_t Utf8Length(std::string_view s);
// Byte offset of character `index` (0-based); s.size() when past the end.
size_t Utf8Offset(std::string_view s, size_t index);
bool IsValidUtf8(std::string_view s);
void Upcase(std::string_view s, std::string& out);
void Downcase(std::string_view s, std::string& out);
void Capitalize(std::string_view s, std::string& out);
// String#casecmp: ASCII case folding, -1/0/1.
int CaseCmp(std::string_view a, std::string_view b);
// String#split(pattern) with Ruby's rules: " " splits on runs of whitespace, "" into
// characters, trailing empty strings dropped. limit > 0 as String#split's limit.
std::vector<std::string_view> Split(std::string_view s, std::string_view pattern,
                                    int64_t limit = 0);
void AppendUtf8(std::string& out, uint32_t cp);

// Levenshtein distance, for "did you mean".
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace nudge::content::internal
