#include "core/time.h"

#include <cstdio>

namespace nudge::core {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[m - 1];
}

class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}
  bool Done() const { return pos_ >= text_.size(); }
  char Peek() const { return Done() ? '\0' : text_[pos_]; }
  size_t Column() const { return pos_ + 1; }
  bool Accept(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }
  // Reads exactly n digits.
  bool Digits(int n, int& out) {
    out = 0;
    for (int i = 0; i < n; ++i) {
      char c = Peek();
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
      ++pos_;
    }
    return true;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

struct ParseError {
  const char* what = nullptr;
  size_t column = 0;
};

ParseError Bad(const Cursor& cur, const char* what) { return {what, cur.Column()}; }

// The parser proper: fills `out`, or returns what went wrong where. Never allocates.
ParseError Parse(std::string_view text, Millis& out) {
  Cursor cur(text);
  int year, month, day, hour = 0, minute = 0, second = 0;
  if (!cur.Digits(4, year)) return Bad(cur, "expected a 4-digit year");
  if (!cur.Accept('-')) return Bad(cur, "expected '-'");
  if (!cur.Digits(2, month) || month < 1 || month > 12) return Bad(cur, "expected month 01-12");
  if (!cur.Accept('-')) return Bad(cur, "expected '-'");
  if (!cur.Digits(2, day) || day < 1 || static_cast<unsigned>(day) > DaysInMonth(year, month))
    return Bad(cur, "expected a day of that month");
  int64_t millis = 0;
  int offset_minutes = 0;
  if (!cur.Done()) {
    if (!cur.Accept('T') && !cur.Accept('t') && !cur.Accept(' '))
      return Bad(cur, "expected 'T' between date and time");
    if (!cur.Digits(2, hour) || hour > 23) return Bad(cur, "expected hour 00-23");
    if (!cur.Accept(':')) return Bad(cur, "expected ':'");
    if (!cur.Digits(2, minute) || minute > 59) return Bad(cur, "expected minute 00-59");
    if (cur.Accept(':')) {
      if (!cur.Digits(2, second) || second > 60) return Bad(cur, "expected second 00-60");
      if (second == 60) second = 59;  // leap second: keep it in the same minute
      if (cur.Accept('.') || cur.Accept(',')) {
        int digits = 0;
        int64_t frac = 0;
        while (cur.Peek() >= '0' && cur.Peek() <= '9') {
          if (digits < 3) frac = frac * 10 + (cur.Peek() - '0');
          ++digits;
          cur.Accept(cur.Peek());
        }
        if (digits == 0) return Bad(cur, "expected digits after '.'");
        for (int i = digits; i < 3; ++i) frac *= 10;
        millis = frac;
      }
    }
    if (cur.Accept('Z') || cur.Accept('z')) {
      // UTC
    } else if (cur.Peek() == '+' || cur.Peek() == '-') {
      const int sign = cur.Peek() == '-' ? -1 : 1;
      cur.Accept(cur.Peek());
      int oh, om = 0;
      if (!cur.Digits(2, oh) || oh > 23) return Bad(cur, "expected offset hours");
      cur.Accept(':');
      if (!cur.Done() && !cur.Digits(2, om)) return Bad(cur, "expected offset minutes");
      offset_minutes = sign * (oh * 60 + om);
    }
  }
  if (!cur.Done()) return Bad(cur, "unexpected character");
  const int64_t days = DaysFromCivil(year, month, day);
  const int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  out = seconds * 1000 + millis;
  return {};
}

}  // namespace

Result<Millis> ParseIso8601(std::string_view text) {
  Millis out = 0;
  const ParseError e = Parse(text, out);
  if (e.what)
    return Err(Status::Invalid(std::string("invalid ISO-8601 timestamp: ") + e.what +
                               " at column " + std::to_string(e.column)));
  return out;
}

std::optional<Millis> TryParseIso8601(std::string_view text) {
  Millis out = 0;
  if (Parse(text, out).what) return std::nullopt;
  return out;
}

std::string FormatIso8601(Millis ms) {
  int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  const int millis = static_cast<int>(ms - seconds * 1000);
  int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  int64_t rem = seconds - days * 86400;
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, y, m, d);
  char buf[40];
  if (y < 0 || y > 9999) {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ",
                  static_cast<long long>(y), m, d, static_cast<int>(rem / 3600),
                  static_cast<int>(rem % 3600 / 60), static_cast<int>(rem % 60), millis);
    return buf;
  }
  // Digit by digit: timestamps are written on every derived event and API row.
  auto put = [](char* at, unsigned v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10) at[i] = static_cast<char>('0' + v % 10);
  };
  std::string out = "0000-00-00T00:00:00.000Z";
  char* o = out.data();
  put(o, static_cast<unsigned>(y), 4);
  put(o + 5, m, 2);
  put(o + 8, d, 2);
  put(o + 11, static_cast<unsigned>(rem / 3600), 2);
  put(o + 14, static_cast<unsigned>(rem % 3600 / 60), 2);
  put(o + 17, static_cast<unsigned>(rem % 60), 2);
  put(o + 20, static_cast<unsigned>(millis), 3);
  return out;
}

bool IsTimeZoneName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "localtime") return false;
  size_t part = 0;  // length of the current part
  for (size_t i = 0; i <= name.size(); ++i) {
    const char c = i < name.size() ? name[i] : '/';
    if (c == '/') {
      if (part == 0) return false;  // a leading '/', "//" or a trailing '/'
      const std::string_view p = name.substr(i - part, part);
      if (p == "." || p == "..") return false;
      part = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '+';
    if (!ok) return false;
    ++part;
  }
  return true;
}

}  // namespace nudge::core
