#include "content/internal/time_format.h"

#include <array>
#include <cctype>

namespace nudge::content::internal {
namespace {

constexpr std::array<std::string_view, 12> kMonths = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};
constexpr std::array<std::string_view, 7> kDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                   "Thursday", "Friday", "Saturday"};

// Howard Hinnant's civil calendar algorithms.
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int64_t& y, int& m, int& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  y += m <= 2;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// ---------------------------------------------------------------------------------------------
// Parsing

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  bool done() const { return i_ >= s_.size(); }
  char peek(size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }
  size_t pos() const { return i_; }
  void set(size_t p) { i_ = p; }
  void skip_space() {
    while (!done() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    if (peek() == c) {
      ++i_;
      return true;
    }
    return false;
  }
  // n digits exactly when n > 0; 1..max otherwise.
  bool digits(int min, int max, int64_t& out, int* count = nullptr) {
    size_t j = i_;
    int64_t v = 0;
    int n = 0;
    while (j < s_.size() && n < max && std::isdigit(static_cast<unsigned char>(s_[j]))) {
      v = v * 10 + (s_[j] - '0');
      ++j;
      ++n;
    }
    if (n < min) return false;
    i_ = j;
    out = v;
    if (count != nullptr) *count = n;
    return true;
  }
  std::string_view word() {
    size_t j = i_;
    while (j < s_.size() && std::isalpha(static_cast<unsigned char>(s_[j]))) ++j;
    std::string_view w = s_.substr(i_, j - i_);
    i_ = j;
    return w;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// "Mar", "March" -> 1..12; 0 when not a month.
int MonthFromWord(std::string_view w) {
  if (w.size() < 3) return 0;
  for (size_t m = 0; m < kMonths.size(); ++m) {
    if (IEquals(w, kMonths[m]) || IEquals(w, kMonths[m].substr(0, 3)) ||
        (m == 8 && IEquals(w, "Sept"))) {
      return static_cast<int>(m) + 1;
    }
  }
  return 0;
}

bool IsWeekday(std::string_view w) {
  if (w.size() < 3) return false;
  for (auto d : kDays) {
    if (IEquals(w, d) || IEquals(w, d.substr(0, 3))) return true;
  }
  return false;
}

struct Fields {
  int64_t year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0;
  int32_t nanos = 0;
  bool has_zone = false;
  int32_t offset = 0;
  bool utc = false;
};

// HH:MM[:SS[.frac]] [am|pm]
bool ParseClock(Scanner& s, Fields& f) {
  if (!s.digits(1, 2, f.hour)) return false;
  if (!s.eat(':')) return false;
  if (!s.digits(2, 2, f.min)) return false;
  if (s.eat(':')) {
    if (!s.digits(2, 2, f.sec)) return false;
    if (s.peek() == '.' || s.peek() == ',') {
      s.set(s.pos() + 1);
      int64_t frac = 0;
      int n = 0;
      if (!s.digits(1, 30, frac, &n)) return false;
      // Keep nanoseconds: rescale the fraction to 9 digits.
      while (n > 9) {
        frac /= 10;
        --n;
      }
      while (n < 9) {
        frac *= 10;
        ++n;
      }
      f.nanos = static_cast<int32_t>(frac);
    }
  }
  const size_t save = s.pos();
  s.skip_space();
  std::string_view w = s.word();
  if (IEquals(w, "am") || IEquals(w, "pm")) {
    if (f.hour < 1 || f.hour > 12) return false;
    if (f.hour == 12) f.hour = 0;
    if (IEquals(w, "pm")) f.hour += 12;
  } else {
    s.set(save);
  }
  return true;
}

// Z, UTC, GMT, +HH:MM, +HHMM, +HH
bool ParseZone(Scanner& s, Fields& f) {
  const size_t save = s.pos();
  s.skip_space();
  if (s.done()) {
    s.set(save);
    return true;
  }
  const char c = s.peek();
  if (c == '+' || c == '-') {
    s.set(s.pos() + 1);
    int64_t hh = 0, mm = 0;
    int n = 0;
    if (!s.digits(1, 4, hh, &n)) return false;
    if (n == 4) {
      mm = hh % 100;
      hh /= 100;
    } else if (n == 3) {
      return false;
    } else if (s.eat(':')) {
      if (!s.digits(2, 2, mm)) return false;
    }
    if (hh > 23 || mm > 59) return false;
    f.has_zone = true;
    f.offset = static_cast<int32_t>((hh * 3600 + mm * 60) * (c == '-' ? -1 : 1));
    f.utc = false;
    return true;
  }
  std::string_view w = s.word();
  if (IEquals(w, "z") || IEquals(w, "utc") || IEquals(w, "gmt") || IEquals(w, "ut")) {
    f.has_zone = true;
    f.utc = true;
    f.offset = 0;
    // "GMT+2" style suffixes are not read.
    return true;
  }
  // RFC 2822's North American zone names, the ones Ruby's Time.parse reads (it takes other
  // names, CET say, for local time).
  static constexpr struct {
    const char* name;
    int32_t minutes;
  } kNamed[] = {{"est", -300}, {"edt", -240}, {"cst", -360}, {"cdt", -300},
                {"mst", -420}, {"mdt", -360}, {"pst", -480}, {"pdt", -420}};
  for (const auto& z : kNamed) {
    if (IEquals(w, z.name)) {
      f.has_zone = true;
      f.utc = false;
      f.offset = z.minutes * 60;
      return true;
    }
  }
  return false;
}

bool ParseTail(Scanner& s, Fields& f) {
  // [T| ]HH:MM[:SS] [zone]
  const size_t save = s.pos();
  if (s.peek() == 'T' || s.peek() == 't') {
    s.set(s.pos() + 1);
    if (!ParseClock(s, f)) return false;
  } else {
    s.skip_space();
    if (std::isdigit(static_cast<unsigned char>(s.peek()))) {
      if (!ParseClock(s, f)) return false;
    } else {
      s.set(save);
      s.skip_space();
      if (s.done()) return true;
      s.set(save);
      return ParseZone(s, f) && (s.skip_space(), s.done());
    }
  }
  if (!ParseZone(s, f)) return false;
  s.skip_space();
  if (!s.done()) {
    // "Tue Mar 05 14:30:00 UTC 2024" style: a year after the zone.
    return false;
  }
  return true;
}

bool ParseFields(std::string_view text, Fields& f) {
  Scanner s(text);
  s.skip_space();
  // Optional weekday: "Tue, " / "Tuesday "
  {
    const size_t save = s.pos();
    std::string_view w = s.word();
    if (!w.empty() && IsWeekday(w)) {
      s.eat(',');
      s.skip_space();
    } else {
      s.set(save);
    }
  }
  if (std::isdigit(static_cast<unsigned char>(s.peek()))) {
    const size_t start = s.pos();
    int64_t a = 0;
    int n = 0;
    s.digits(1, 4, a, &n);
    if (n == 4 && (s.peek() == '-' || s.peek() == '/')) {
      // YYYY-MM-DD, YYYY/MM/DD
      const char sep = s.peek();
      s.set(s.pos() + 1);
      f.year = a;
      if (!s.digits(1, 2, f.mon) || !s.eat(sep) || !s.digits(1, 2, f.day)) return false;
      if (std::isdigit(static_cast<unsigned char>(s.peek()))) return false;
      return ParseTail(s, f);
    }
    if (n <= 2 && s.peek() == '/') {
      // DD/MM/YYYY
      s.set(s.pos() + 1);
      f.day = a;
      int yn = 0;
      if (!s.digits(1, 2, f.mon) || !s.eat('/') || !s.digits(4, 4, f.year, &yn)) return false;
      return ParseTail(s, f);
    }
    if (n <= 2) {
      // D Month YYYY
      f.day = a;
      s.skip_space();
      s.eat('-');
      f.mon = MonthFromWord(s.word());
      if (f.mon == 0) return false;
      s.eat('-');
      s.skip_space();
      if (!s.digits(4, 4, f.year)) return false;
      return ParseTail(s, f);
    }
    (void)start;
    return false;
  }
  // Month D[,] YYYY
  f.mon = MonthFromWord(s.word());
  if (f.mon == 0) return false;
  s.skip_space();
  if (!s.digits(1, 2, f.day)) return false;
  s.eat(',');
  s.skip_space();
  if (!s.digits(4, 4, f.year)) return false;
  return ParseTail(s, f);
}

}  // namespace

std::optional<Time> ParseTime(std::string_view text) {
  Fields f;
  if (!ParseFields(text, f)) return std::nullopt;
  if (f.mon < 1 || f.mon > 12 || f.day < 1 || f.day > 31) return std::nullopt;
  if (f.hour > 24 || f.min > 59 || f.sec > 60) return std::nullopt;
  if (f.hour == 24 && (f.min != 0 || f.sec != 0)) return std::nullopt;
  Time t;
  const int64_t days = DaysFromCivil(f.year, f.mon, 1) + (f.day - 1);  // day 30 of Feb rolls over
  t.seconds = days * 86400 + f.hour * 3600 + f.min * 60 + f.sec - f.offset;
  t.nanos = f.nanos;
  t.offset = f.offset;
  t.utc_name = !f.has_zone || f.utc || f.offset == 0;
  return t;
}

// ---------------------------------------------------------------------------------------------
// strftime

namespace {

struct Local {
  int64_t year;
  int mon, day, hour, min, sec;
  int wday;  // 0 = Sunday
  int yday;  // 0-based
};

Local ToLocal(const Time& t) {
  const int64_t secs = t.seconds + t.offset;
  const int64_t days = FloorDiv(secs, 86400);
  const int64_t rem = secs - days * 86400;
  Local l{};
  CivilFromDays(days, l.year, l.mon, l.day);
  l.hour = static_cast<int>(rem / 3600);
  l.min = static_cast<int>(rem / 60 % 60);
  l.sec = static_cast<int>(rem % 60);
  l.wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  l.yday = static_cast<int>(days - DaysFromCivil(l.year, 1, 1));
  return l;
}

// ISO 8601 week-based year and week.
void IsoWeek(const Local& l, int64_t& year, int& week) {
  const int wday_mon = (l.wday + 6) % 7;  // Monday = 0
  int w = (l.yday - wday_mon + 10) / 7;
  year = l.year;
  if (w < 1) {
    --year;
    const int prev_days = IsLeap(year) ? 366 : 365;
    w = (l.yday + prev_days - wday_mon + 10) / 7;
  } else {
    const int days = IsLeap(l.year) ? 366 : 365;
    if (l.yday - wday_mon + 3 >= days) {
      ++year;
      w = 1;
    }
  }
  week = w;
}

struct Spec {
  char pad = 0;  // 0: the conversion's default
  bool no_pad = false;
  bool upper = false;
  bool swap = false;
  int width = -1;
  int colons = 0;
};

void Pad(std::string& out, std::string_view s, const Spec& spec, char default_pad,
         int default_width) {
  int width = spec.width >= 0 ? spec.width : default_width;
  if (spec.no_pad) width = 0;
  const char pad = spec.pad != 0 ? spec.pad : default_pad;
  if (static_cast<int>(s.size()) < width) out.append(width - s.size(), pad);
  out += s;
}

void Num(std::string& out, int64_t v, const Spec& spec, int default_width, char default_pad = '0') {
  std::string digits;
  const bool neg = v < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + u % 10));
    u /= 10;
  } while (u != 0);
  if (neg) {
    // Ruby pads negative numbers after the sign with zeros, before it with spaces.
    const char pad = spec.pad != 0 ? spec.pad : default_pad;
    int width = spec.width >= 0 ? spec.width : default_width;
    if (spec.no_pad) width = 0;
    if (pad == '0') {
      std::string s = "-";
      if (static_cast<int>(digits.size()) + 1 < width) s.append(width - digits.size() - 1, '0');
      out += s + digits;
    } else {
      Pad(out, "-" + digits, spec, pad, default_width);
    }
    return;
  }
  Pad(out, digits, spec, default_pad, default_width);
}

void Text(std::string& out, std::string_view s, const Spec& spec, bool swap_means_lower = false) {
  std::string t(s);
  if (spec.upper || (spec.swap && !swap_means_lower)) {
    for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  } else if (spec.swap && swap_means_lower) {
    for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  Pad(out, t, spec, ' ', 0);
}

bool Format(const Time& t, const Local& l, std::string_view f, std::string& out);

void Composite(const Time& t, const Local& l, std::string_view f, const Spec& spec,
               std::string& out) {
  std::string s;
  Format(t, l, f, s);
  Text(out, s, spec);
}

bool Format(const Time& t, const Local& l, std::string_view f, std::string& out) {
  size_t i = 0;
  while (i < f.size()) {
    const char c = f[i];
    if (c != '%') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 >= f.size()) return false;  // a lone '%' at the end
    const size_t start = i;
    ++i;
    Spec spec;
    for (; i < f.size(); ++i) {
      const char g = f[i];
      if (g == '-') {
        spec.no_pad = true;
      } else if (g == '_') {
        spec.pad = ' ';
      } else if (g == '0') {
        spec.pad = '0';
      } else if (g == '^') {
        spec.upper = true;
      } else if (g == '#') {
        spec.swap = true;
      } else {
        break;
      }
    }
    if (i < f.size() && f[i] >= '1' && f[i] <= '9') {
      int w = 0;
      while (i < f.size() && f[i] >= '0' && f[i] <= '9') {
        w = std::min(w * 10 + (f[i] - '0'), 1024);
        ++i;
      }
      spec.width = w;
    }
    while (i < f.size() && f[i] == ':' && spec.colons < 3) {
      ++spec.colons;
      ++i;
    }
    if (i < f.size() && (f[i] == 'E' || f[i] == 'O') && i + 1 < f.size() &&
        std::string_view(f[i] == 'E' ? "cCxXyY" : "deHkIlmMSuUVwWy").find(f[i + 1]) !=
            std::string_view::npos) {
      ++i;
    }
    if (i >= f.size()) return false;  // the format ends inside a directive
    const char conv = f[i++];
    if (spec.colons > 0 && conv != 'z') {
      out.append(f.substr(start, i - start));
      continue;
    }
    switch (conv) {
      case 'Y':
        if (l.year < 0) {
          Num(out, l.year, spec, 5);
        } else {
          Num(out, l.year, spec, 4);
        }
        break;
      case 'C':
        Num(out, FloorDiv(l.year, 100), spec, 2);
        break;
      case 'y':
        Num(out, ((l.year % 100) + 100) % 100, spec, 2);
        break;
      case 'm':
        Num(out, l.mon, spec, 2);
        break;
      case 'd':
        Num(out, l.day, spec, 2);
        break;
      case 'e':
        Num(out, l.day, spec, 2, ' ');
        break;
      case 'j':
        Num(out, l.yday + 1, spec, 3);
        break;
      case 'H':
        Num(out, l.hour, spec, 2);
        break;
      case 'k':
        Num(out, l.hour, spec, 2, ' ');
        break;
      case 'I':
        Num(out, l.hour % 12 == 0 ? 12 : l.hour % 12, spec, 2);
        break;
      case 'l':
        Num(out, l.hour % 12 == 0 ? 12 : l.hour % 12, spec, 2, ' ');
        break;
      case 'M':
        Num(out, l.min, spec, 2);
        break;
      case 'S':
        Num(out, l.sec, spec, 2);
        break;
      case 'L':
      case 'N': {
        int digits = spec.width > 0 ? spec.width : (conv == 'L' ? 3 : 9);
        std::string s = std::to_string(t.nanos);
        s.insert(0, 9 - s.size(), '0');
        if (digits <= 9) {
          s.resize(static_cast<size_t>(digits));
        } else {
          s.append(static_cast<size_t>(digits - 9), '0');
        }
        out += s;
        break;
      }
      case 'z': {
        const int32_t off = t.offset;
        const char sign = off < 0 ? '-' : '+';
        const int32_t a = off < 0 ? -off : off;
        std::string s(1, sign);
        auto two = [&](int v) {
          s += static_cast<char>('0' + v / 10);
          s += static_cast<char>('0' + v % 10);
        };
        two(a / 3600);
        if (spec.colons == 3) {
          // %:::z: as few parts as needed (+09, +09:30, +09:30:30)
          if (a % 3600 != 0) {
            s += ':';
            two(a / 60 % 60);
          }
          if (a % 60 != 0) {
            s += ':';
            two(a % 60);
          }
        } else {
          if (spec.colons >= 1) s += ':';
          two(a / 60 % 60);
          if (spec.colons >= 2) {
            s += ':';
            two(a % 60);
          }
        }
        Pad(out, s, spec, '0', 0);
        break;
      }
      case 'Z':
        Text(out, t.utc_name ? "UTC" : "", spec, /*swap_means_lower=*/true);
        break;
      case 'A':
        Text(out, kDays[l.wday], spec);
        break;
      case 'a':
        Text(out, kDays[l.wday].substr(0, 3), spec);
        break;
      case 'B':
        Text(out, kMonths[l.mon - 1], spec);
        break;
      case 'b':
      case 'h':
        Text(out, kMonths[l.mon - 1].substr(0, 3), spec);
        break;
      case 'p':
        Text(out, l.hour < 12 ? "AM" : "PM", spec, /*swap_means_lower=*/true);
        break;
      case 'P':
        Text(out, l.hour < 12 ? "am" : "pm", spec);
        break;
      case 'u':
        Num(out, l.wday == 0 ? 7 : l.wday, spec, 1);
        break;
      case 'w':
        Num(out, l.wday, spec, 1);
        break;
      case 'U':
        Num(out, (l.yday + 7 - l.wday) / 7, spec, 2);
        break;
      case 'W':
        Num(out, (l.yday + 7 - (l.wday + 6) % 7) / 7, spec, 2);
        break;
      case 'G':
      case 'g':
      case 'V': {
        int64_t y = 0;
        int w = 0;
        IsoWeek(l, y, w);
        if (conv == 'G') {
          Num(out, y, spec, 4);
        } else if (conv == 'g') {
          Num(out, ((y % 100) + 100) % 100, spec, 2);
        } else {
          Num(out, w, spec, 2);
        }
        break;
      }
      case 's':
        Num(out, t.seconds, spec, 1);
        break;
      case 'n':
        Text(out, "\n", spec);
        break;
      case 't':
        Text(out, "\t", spec);
        break;
      case '%':
        Text(out, "%", spec);
        break;
      case 'c':
        Composite(t, l, "%a %b %e %H:%M:%S %Y", spec, out);
        break;
      case 'D':
      case 'x':
        Composite(t, l, "%m/%d/%y", spec, out);
        break;
      case 'F':
        Composite(t, l, "%Y-%m-%d", spec, out);
        break;
      case 'T':
      case 'X':
        Composite(t, l, "%H:%M:%S", spec, out);
        break;
      case 'R':
        Composite(t, l, "%H:%M", spec, out);
        break;
      case 'r':
        Composite(t, l, "%I:%M:%S %p", spec, out);
        break;
      case 'v':
        Composite(t, l, "%e-%^b-%4Y", spec, out);
        break;
      default:
        out.append(f.substr(start, i - start));
    }
  }
  return true;
}

}  // namespace

bool Strftime(const Time& t, std::string_view format, std::string& out) {
  const Local l = ToLocal(t);
  return Format(t, l, format, out);
}

}  // namespace nudge::content::internal
