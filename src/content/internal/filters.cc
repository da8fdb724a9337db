// The standard filters of Liquid 5 (Liquid::StandardFilters in standardfilters.rb), each
// reproducing the Ruby method it is named after, Ruby's own quirks included. Plus `json` and
// `raw`, which the gem does not have.
#include "content/internal/filters.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "content/internal/render.h"
#include "content/internal/ruby.h"
#include "content/internal/time_format.h"
#include "core/json.h"
#include "core/url.h"

namespace nudge::content::internal {
namespace {

using Args = const Value*;

Value Str(Renderer& r, std::string_view s, bool safe = false) { return r.arena.String(s, safe); }

std::string ToStr(const Value& v) {
  std::string s;
  AppendToS(s, v);
  return s;
}

// For inputs that are strings already, no copy.
std::string_view ToView(const Value& v, std::string& buf) {
  if (v.is_string()) return v.AsString();
  buf.clear();
  AppendToS(buf, v);
  return buf;
}

Value ArrayOf(Renderer& r, const std::vector<Value>& items) { return r.arena.Array(items); }

bool IntArg(Renderer& r, const Value& v, int64_t* out) {
  auto i = ToInteger(v);
  if (!i) return r.FailB("invalid integer");
  *out = *i;
  return true;
}

// ---- string filters

bool Size(Renderer&, const Value& in, Args, size_t, Value* out) {
  switch (in.kind()) {
    case ValueKind::kString:
      *out = Value::Int(static_cast<int64_t>(Utf8Length(in.AsString())));
      break;
    case ValueKind::kArray:
    case ValueKind::kHash:
      *out = Value::Int(static_cast<int64_t>(in.size()));
      break;
    case ValueKind::kInt:
      *out = Value::Int(8);
      break;
    case ValueKind::kRange:
      *out = Value::Int(ValueAccess::range(in)->size());
      break;
    default:
      *out = Value::Int(0);
  }
  return true;
}

bool DowncaseFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  Downcase(ToView(in, buf), res);
  *out = Str(r, res);
  return true;
}

bool UpcaseFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  Upcase(ToView(in, buf), res);
  *out = Str(r, res);
  return true;
}

bool CapitalizeFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  Capitalize(ToView(in, buf), res);
  *out = Str(r, res);
  return true;
}

bool Escape(Renderer& r, const Value& in, Args, size_t, Value* out) {
  if (in.is_nil()) {
    *out = Value();
    return true;
  }
  std::string buf, res;
  AppendEscaped(res, ToView(in, buf));
  *out = Str(r, res, /*safe=*/true);
  return true;
}

bool EscapeOnce(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  const std::string_view s = ToView(in, buf);
  // /["><']|&(?!([a-zA-Z]+|(#\d+));)/
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '"':
        res += "&quot;";
        break;
      case '>':
        res += "&gt;";
        break;
      case '<':
        res += "&lt;";
        break;
      case '\'':
        res += "&#39;";
        break;
      case '&': {
        size_t j = i + 1;
        bool entity = false;
        if (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) {
          while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
          entity = j < s.size() && s[j] == ';';
        } else if (j < s.size() && s[j] == '#') {
          ++j;
          const size_t d = j;
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
          entity = j > d && j < s.size() && s[j] == ';';
        }
        res += entity ? "&" : "&amp;";
        break;
      }
      default:
        res += c;
    }
  }
  *out = Str(r, res, /*safe=*/true);
  return true;
}

bool UrlEncode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  if (in.is_nil()) {
    *out = Value();
    return true;
  }
  std::string buf;
  *out = Str(r, core::PercentEncode(ToView(in, buf), /*space_as_plus=*/true));
  return true;
}

bool UrlDecode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  if (in.is_nil()) {
    *out = Value();
    return true;
  }
  std::string buf;
  const std::string res = core::PercentDecode(ToView(in, buf), /*plus_as_space=*/true);
  if (!IsValidUtf8(res)) return r.FailB("invalid byte sequence in UTF-8");
  *out = Str(r, res);
  return true;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string B64Encode(std::string_view s, bool url) {
  std::string res;
  size_t i = 0;
  while (i + 2 < s.size()) {
    const uint32_t v = (static_cast<unsigned char>(s[i]) << 16) |
                       (static_cast<unsigned char>(s[i + 1]) << 8) |
                       static_cast<unsigned char>(s[i + 2]);
    res += kB64[(v >> 18) & 63];
    res += kB64[(v >> 12) & 63];
    res += kB64[(v >> 6) & 63];
    res += kB64[v & 63];
    i += 3;
  }
  if (i + 1 == s.size()) {
    const uint32_t v = static_cast<unsigned char>(s[i]) << 16;
    res += kB64[(v >> 18) & 63];
    res += kB64[(v >> 12) & 63];
    res += "==";
  } else if (i + 2 == s.size()) {
    const uint32_t v =
        (static_cast<unsigned char>(s[i]) << 16) | (static_cast<unsigned char>(s[i + 1]) << 8);
    res += kB64[(v >> 18) & 63];
    res += kB64[(v >> 12) & 63];
    res += kB64[(v >> 6) & 63];
    res += '=';
  }
  if (url) {
    for (char& c : res) {
      if (c == '+') c = '-';
      if (c == '/') c = '_';
    }
  }
  return res;
}

// Base64.strict_decode64: length a multiple of 4, padding only at the end, no other bytes.
bool B64Decode(std::string_view s, std::string& res) {
  if (s.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    const char* p = std::strchr(kB64, c);
    return c != '\0' && p != nullptr ? static_cast<int>(p - kB64) : -1;
  };
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s[i + k];
      if (c == '=') {
        if (i + 4 != s.size() || k < 2) return false;
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return false;
        v[k] = val(c);
        if (v[k] < 0) return false;
      }
    }
    const uint32_t x = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    res += static_cast<char>((x >> 16) & 255);
    if (pad < 2) res += static_cast<char>((x >> 8) & 255);
    if (pad < 1) res += static_cast<char>(x & 255);
    // Unused bits must be zero.
    if ((pad == 2 && (v[1] & 15) != 0) || (pad == 1 && (v[2] & 3) != 0)) return false;
  }
  return true;
}

bool Base64Encode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf;
  *out = Str(r, B64Encode(ToView(in, buf), false));
  return true;
}

bool Base64Decode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  if (!B64Decode(ToView(in, buf), res)) {
    return r.FailB("invalid base64 provided to base64_decode");
  }
  *out = Str(r, res);
  return true;
}

bool Base64UrlSafeEncode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf;
  *out = Str(r, B64Encode(ToView(in, buf), true));
  return true;
}

bool Base64UrlSafeDecode(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  std::string s(ToView(in, buf));
  // urlsafe_decode64 adds missing padding, turns - and _ into + and /, then decodes strictly:
  // + and / themselves are read too.
  if (s.size() % 4 != 0 && s.find('=') == std::string::npos) s.append(4 - s.size() % 4, '=');
  for (char& c : s) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    }
  }
  if (!B64Decode(s, res)) return r.FailB("invalid base64 provided to base64_url_safe_decode");
  *out = Str(r, res);
  return true;
}

bool Slice(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  int64_t offset = 0, length = 1;
  if (!IntArg(r, a[0], &offset)) return false;
  if (n > 1 && a[1].truthy() && !IntArg(r, a[1], &length)) return false;
  if (in.kind() == ValueKind::kArray) {
    const int64_t size = in.size();
    int64_t start = offset < 0 ? offset + size : offset;
    if (start < 0 || start > size || length < 0) {
      *out = r.arena.Array(nullptr, 0);
      return true;
    }
    const int64_t cnt = std::min(length, size - start);
    *out = ValueAccess::Array(ValueAccess::items(in) + start, static_cast<uint32_t>(cnt));
    return true;
  }
  std::string buf;
  const std::string_view s = ToView(in, buf);
  const int64_t size = static_cast<int64_t>(Utf8Length(s));
  const int64_t start = offset < 0 ? offset + size : offset;
  if (start < 0 || start > size || length < 0) {
    *out = Value::Borrowed("");
    return true;
  }
  const int64_t cnt = std::min(length, size - start);
  const size_t b = Utf8Offset(s, static_cast<size_t>(start));
  const size_t e = b + Utf8Offset(s.substr(b), static_cast<size_t>(cnt));
  *out = in.is_string() ? Value::Borrowed(s.substr(b, e - b)) : Str(r, s.substr(b, e - b));
  return true;
}

bool Truncate(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  if (in.is_nil()) {
    *out = Value();
    return true;
  }
  int64_t length = 50;
  if (n > 0 && !IntArg(r, a[0], &length)) return false;
  std::string buf, ts_buf;
  const std::string_view s = ToView(in, buf);
  const std::string_view ts = n > 1 ? ToView(a[1], ts_buf) : std::string_view("...");
  int64_t l = length - static_cast<int64_t>(Utf8Length(ts));
  if (l < 0) l = 0;
  if (static_cast<int64_t>(Utf8Length(s)) > length) {
    std::string res(s.substr(0, Utf8Offset(s, static_cast<size_t>(l))));
    res += ts;
    *out = Str(r, res);
  } else {
    *out = in.is_string() ? in.WithSafe(false) : Str(r, s);
  }
  return true;
}

bool Truncatewords(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  if (in.is_nil()) {
    *out = Value();
    return true;
  }
  int64_t words = 15;
  if (n > 0 && !IntArg(r, a[0], &words)) return false;
  if (words <= 0) words = 1;
  if (words > (int64_t{1} << 31) - 2) {
    return r.FailB("integer " + std::to_string(words) + " too big for truncatewords");
  }
  std::string buf, ts_buf;
  const std::string_view s = ToView(in, buf);
  auto list = internal::Split(s, " ", words + 1);
  if (static_cast<int64_t>(list.size()) <= words) {
    *out = in.is_string() ? in.WithSafe(false) : Str(r, s);
    return true;
  }
  list.pop_back();
  std::string res;
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) res += ' ';
    res += list[i];
  }
  res += n > 1 ? ToView(a[1], ts_buf) : std::string_view("...");
  *out = Str(r, res);
  return true;
}

bool SplitFilter(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::string buf, pbuf;
  const std::string_view s = ToView(in, buf);
  const std::string_view pattern = ToView(a[0], pbuf);
  auto parts = internal::Split(s, pattern);
  std::vector<Value> items;
  items.reserve(parts.size());
  const bool borrow = in.is_string();
  for (auto p : parts) items.push_back(borrow ? Value::Borrowed(p) : Str(r, p));
  *out = ArrayOf(r, items);
  return true;
}

bool StripFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf;
  const std::string_view s = Strip(ToView(in, buf));
  *out = in.is_string() ? Value::Borrowed(s) : Str(r, s);
  return true;
}

bool LStripFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf;
  const std::string_view s = LStrip(ToView(in, buf));
  *out = in.is_string() ? Value::Borrowed(s) : Str(r, s);
  return true;
}

bool RStripFilter(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf;
  const std::string_view s = RStrip(ToView(in, buf));
  *out = in.is_string() ? Value::Borrowed(s) : Str(r, s);
  return true;
}

bool StartsAt(std::string_view s, size_t i, std::string_view p) {
  return s.substr(i, p.size()) == p;
}

bool StripHtml(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, pass1, res;
  const std::string_view s = ToView(in, buf);
  // %r{<script.*?</script>}m | /<!--.*?-->/m | %r{<style.*?</style>}m
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '<') {
      size_t end = std::string_view::npos;
      if (StartsAt(s, i, "<script")) {
        const size_t j = s.find("</script>", i + 7);
        if (j != std::string_view::npos) end = j + 9;
      }
      if (end == std::string_view::npos && StartsAt(s, i, "<!--")) {
        const size_t j = s.find("-->", i + 4);
        if (j != std::string_view::npos) end = j + 3;
      }
      if (end == std::string_view::npos && StartsAt(s, i, "<style")) {
        const size_t j = s.find("</style>", i + 6);
        if (j != std::string_view::npos) end = j + 8;
      }
      if (end != std::string_view::npos) {
        i = end;
        continue;
      }
    }
    pass1 += s[i++];
  }
  // /<.*?>/m
  for (size_t i = 0; i < pass1.size();) {
    if (pass1[i] == '<') {
      const size_t j = pass1.find('>', i + 1);
      if (j != std::string::npos) {
        i = j + 1;
        continue;
      }
    }
    res += pass1[i++];
  }
  *out = Str(r, res);
  return true;
}

bool StripNewlines(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  const std::string_view s = ToView(in, buf);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') continue;
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    res += s[i];
  }
  *out = Str(r, res);
  return true;
}

bool NewlineToBr(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string buf, res;
  const std::string_view s = ToView(in, buf);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') {
      res += "<br />\n";
    } else if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      res += "<br />\n";
      ++i;
    } else {
      res += s[i];
    }
  }
  *out = Str(r, res);
  return true;
}

// Ruby's sub/gsub replacement string: \0 \& (the match), \` \' (before, after), \\ ; \1..\9
// and \k<..> name groups that a plain string pattern does not have.
void AppendReplacement(std::string& res, std::string_view repl, std::string_view s, size_t at,
                       size_t len) {
  for (size_t i = 0; i < repl.size(); ++i) {
    if (repl[i] != '\\' || i + 1 >= repl.size()) {
      res += repl[i];
      continue;
    }
    const char c = repl[i + 1];
    if (c == '0' || c == '&') {
      res += s.substr(at, len);
      ++i;
    } else if (c == '`') {
      res += s.substr(0, at);
      ++i;
    } else if (c == '\'') {
      res += s.substr(at + len);
      ++i;
    } else if (c == '\\') {
      res += '\\';
      ++i;
    } else if (c >= '1' && c <= '9') {
      ++i;
    } else if (c == 'k' && i + 2 < repl.size() && repl[i + 2] == '<') {
      const size_t close = repl.find('>', i + 3);
      if (close == std::string_view::npos) {
        res += repl[i];
      } else {
        i = close;
      }
    } else {
      res += repl[i];
    }
  }
}

bool ReplaceImpl(Renderer& r, const Value& in, const Value& pattern, const Value* replacement,
                 bool first_only, Value* out) {
  std::string buf, pbuf, rbuf;
  const std::string_view s = ToView(in, buf);
  const std::string_view p = ToView(pattern, pbuf);
  const std::string_view repl = replacement ? ToView(*replacement, rbuf) : std::string_view();
  std::string res;
  size_t start = 0;
  if (p.empty()) {
    // Matches before every character and at the end.
    size_t i = 0;
    while (true) {
      if (!r.arena.Fits(res.size() + repl.size() + 4)) return r.CheckMemory();
      AppendReplacement(res, repl, s, i, 0);
      if (i >= s.size() || first_only) break;
      size_t j = i + 1;
      while (j < s.size() && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
      res.append(s.substr(i, j - i));
      i = j;
    }
    if (first_only) res.append(s);
    *out = Str(r, res);
    return true;
  }
  for (;;) {
    const size_t at = s.find(p, start);
    if (at == std::string_view::npos) break;
    res.append(s.substr(start, at - start));
    if (!r.arena.Fits(res.size() + repl.size())) return r.CheckMemory();
    AppendReplacement(res, repl, s, at, p.size());
    start = at + p.size();
    if (first_only) break;
  }
  res.append(s.substr(start));
  *out = Str(r, res);
  return true;
}

bool Replace(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  return ReplaceImpl(r, in, a[0], n > 1 ? &a[1] : nullptr, false, out);
}

bool ReplaceFirst(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  return ReplaceImpl(r, in, a[0], n > 1 ? &a[1] : nullptr, true, out);
}

bool ReplaceLastImpl(Renderer& r, const Value& in, const Value& pattern, std::string_view repl,
                     Value* out) {
  std::string buf, pbuf;
  const std::string_view s = ToView(in, buf);
  const std::string_view p = ToView(pattern, pbuf);
  const size_t at = s.rfind(p);
  if (at == std::string_view::npos) {
    *out = in.is_string() ? in.WithSafe(false) : Str(r, s);
    return true;
  }
  std::string res(s.substr(0, at));
  res += repl;
  res += s.substr(at + p.size());
  *out = Str(r, res);
  return true;
}

bool ReplaceLast(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::string rbuf;
  return ReplaceLastImpl(r, in, a[0], ToView(a[1], rbuf), out);
}

bool Remove(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return ReplaceImpl(r, in, a[0], nullptr, false, out);
}

bool RemoveFirst(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return ReplaceImpl(r, in, a[0], nullptr, true, out);
}

bool RemoveLast(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return ReplaceLastImpl(r, in, a[0], "", out);
}

bool Append(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::string b1, b2;
  const std::string_view x = ToView(in, b1), y = ToView(a[0], b2);
  if (!r.arena.Fits(x.size() + y.size())) return r.CheckMemory();
  std::string res;
  res.reserve(x.size() + y.size());
  res += x;
  res += y;
  *out = Str(r, res);
  return true;
}

bool Prepend(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::string b1, b2;
  const std::string_view x = ToView(a[0], b1), y = ToView(in, b2);
  if (!r.arena.Fits(x.size() + y.size())) return r.CheckMemory();
  std::string res;
  res.reserve(x.size() + y.size());
  res += x;
  res += y;
  *out = Str(r, res);
  return true;
}

// ---- array filters

bool Join(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  std::string gbuf;
  const std::string_view glue = n > 0 ? ToView(a[0], gbuf) : std::string_view(" ");
  std::string res;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) res += glue;
    AppendToS(res, items[i]);
    if (!r.arena.Fits(res.size())) return r.CheckMemory();
  }
  *out = Str(r, res);
  return true;
}

// glibc's qsort_r (a top-down merge sort), which Ruby's Array#sort uses on Linux: the same
// comparisons in the same order, so ties and errors come out as in Ruby.
template <typename Cmp>
bool MergeSort(Value* b, size_t n, Value* tmp, Cmp& cmp) {
  if (n <= 1) return true;
  const size_t n1 = n / 2, n2 = n - n1;
  Value* b1 = b;
  Value* b2 = b + n1;
  if (!MergeSort(b1, n1, tmp, cmp) || !MergeSort(b2, n2, tmp, cmp)) return false;
  size_t i = 0, j = 0, k = 0;
  while (i < n1 && j < n2) {
    int c = 0;
    if (!cmp(b1[i], b2[j], &c)) return false;
    if (c <= 0) {
      tmp[k++] = b1[i++];
    } else {
      tmp[k++] = b2[j++];
    }
  }
  while (i < n1) tmp[k++] = b1[i++];
  // The rest of b2 is already in place.
  std::copy(tmp, tmp + k, b);
  return true;
}

template <typename Cmp>
bool SortValues(std::vector<Value>& v, Cmp cmp) {
  std::vector<Value> tmp(v.size());
  return MergeSort(v.data(), v.size(), tmp.data(), cmp);
}

bool NilSafeCompare(Renderer& r, const Value& a, const Value& b, int* out) {
  auto c = internal::Compare(a, b);
  if (c) {
    *out = *c;
  } else if (a.is_nil()) {
    *out = 1;
  } else if (b.is_nil()) {
    *out = -1;
  } else {
    return r.FailB("cannot sort values of incompatible types");
  }
  return true;
}

int NilSafeCaseCmp(const Value& a, const Value& b) {
  if (!a.is_nil() && !b.is_nil()) return CaseCmp(ToStr(a), ToStr(b));
  return a.is_nil() ? 1 : -1;
}

// `property` given: every element must answer []; the keys are read as comparisons need them.
bool SortImpl(Renderer& r, const Value& in, Args a, size_t n, bool natural, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  if (items.empty()) {
    *out = r.arena.Array(nullptr, 0);
    return true;
  }
  if (n == 0 || a[0].is_nil()) {
    bool ok = true;
    if (natural) {
      SortValues(items, [](const Value& x, const Value& y, int* c) {
        *c = NilSafeCaseCmp(x, y);
        return true;
      });
    } else {
      ok = SortValues(items, [&](const Value& x, const Value& y, int* c) {
        return NilSafeCompare(r, x, y, c);
      });
    }
    if (!ok) return false;
    *out = ArrayOf(r, items);
    return true;
  }
  const Value property = a[0];
  for (const Value& item : items) {
    switch (item.kind()) {
      case ValueKind::kHash:
      case ValueKind::kString:
      case ValueKind::kArray:
      case ValueKind::kInt:
      case ValueKind::kObject:
        break;
      default:
        *out = Value();  // not every element answers []: the filter returns nil
        return true;
    }
  }
  auto key = [&](const Value& item, Value* k) {
    bool responds = true;
    return r.Property(item, property, k, &responds);
  };
  const bool ok = SortValues(items, [&](const Value& x, const Value& y, int* c) {
    Value kx, ky;
    if (!key(x, &kx) || !key(y, &ky)) return false;
    if (natural) {
      *c = NilSafeCaseCmp(kx, ky);
      return true;
    }
    return NilSafeCompare(r, kx, ky, c);
  });
  if (!ok) return false;
  *out = ArrayOf(r, items);
  return true;
}

bool Sort(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  return SortImpl(r, in, a, n, false, out);
}

bool SortNatural(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  return SortImpl(r, in, a, n, true, out);
}

// Calls f(item, key) for each element's item[property]; returns nil for the whole filter when
// an element has no [] (Ruby's `rescue NoMethodError; return nil`).
template <typename F>
bool EachProperty(Renderer& r, const std::vector<Value>& items, const Value& property,
                  bool* nil_result, F f) {
  *nil_result = false;
  for (const Value& item : items) {
    bool responds = true;
    Value k;
    if (!r.Property(item, property, &k, &responds)) {
      if (!responds) {
        *nil_result = true;
        return true;
      }
      return false;
    }
    f(item, k);
  }
  return true;
}

bool Where(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  if (items.empty()) {
    *out = r.arena.Array(nullptr, 0);
    return true;
  }
  const Value target = n > 1 ? a[1] : Value();
  std::vector<Value> res;
  bool nil_result = false;
  if (!EachProperty(r, items, a[0], &nil_result, [&](const Value& item, const Value& k) {
        if (target.is_nil() ? k.truthy() : Equal(k, target)) res.push_back(item);
      })) {
    return false;
  }
  *out = nil_result ? Value() : ArrayOf(r, res);
  return true;
}

bool Uniq(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  std::vector<Value> res, keys;
  auto add = [&](const Value& item, const Value& k) {
    for (const Value& seen : keys) {
      if (Eql(seen, k)) return;
    }
    keys.push_back(k);
    res.push_back(item);
  };
  if (n == 0 || a[0].is_nil()) {
    for (const Value& item : items) add(item, item);
  } else if (!items.empty()) {
    bool nil_result = false;
    if (!EachProperty(r, items, a[0], &nil_result, add)) return false;
    if (nil_result) {
      *out = Value();
      return true;
    }
  }
  *out = ArrayOf(r, res);
  return true;
}

bool Reverse(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  std::reverse(items.begin(), items.end());
  *out = ArrayOf(r, items);
  return true;
}

bool Map(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  const Value property = a[0];
  const bool to_liquid = property.is_string() && property.AsString() == "to_liquid";
  std::vector<Value> res;
  res.reserve(items.size());
  for (const Value& item : items) {
    if (to_liquid) {
      res.push_back(item);
      continue;
    }
    bool responds = true;
    Value k;
    if (!r.Property(item, property, &k, &responds)) {
      if (responds) return false;
      k = Value();
    }
    res.push_back(k);
  }
  *out = ArrayOf(r, res);
  return true;
}

bool Compact(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  std::vector<Value> res;
  if (n == 0 || a[0].is_nil()) {
    for (const Value& item : items) {
      if (!item.is_nil()) res.push_back(item);
    }
  } else if (!items.empty()) {
    bool nil_result = false;
    if (!EachProperty(r, items, a[0], &nil_result, [&](const Value& item, const Value& k) {
          if (!k.is_nil()) res.push_back(item);
        })) {
      return false;
    }
    if (nil_result) {
      *out = Value();
      return true;
    }
  }
  *out = ArrayOf(r, res);
  return true;
}

bool Concat(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  if (a[0].kind() != ValueKind::kArray) {
    return r.FailB("concat filter requires an array argument");
  }
  std::vector<Value> items;
  if (!r.ToList(in, items)) return false;
  for (uint32_t i = 0; i < a[0].size(); ++i) items.push_back(ValueAccess::items(a[0])[i]);
  *out = ArrayOf(r, items);
  return true;
}

bool First(Renderer& r, const Value& in, Args, size_t, Value* out) {
  switch (in.kind()) {
    case ValueKind::kArray:
      *out = in.size() > 0 ? ValueAccess::items(in)[0] : Value();
      return true;
    case ValueKind::kHash:
      if (in.size() == 0) {
        *out = Value();
      } else {
        const HashEntry& e = ValueAccess::hash(in)->entries[0];
        *out = r.Pair(e.key_view(), e.value);
      }
      return true;
    case ValueKind::kRange:
      *out = Value::Int(ValueAccess::range(in)->lo);
      return true;
    default:
      *out = Value();
      return true;
  }
}

bool Last(Renderer&, const Value& in, Args, size_t, Value* out) {
  switch (in.kind()) {
    case ValueKind::kArray:
      *out = in.size() > 0 ? ValueAccess::items(in)[in.size() - 1] : Value();
      return true;
    case ValueKind::kRange:
      *out = Value::Int(ValueAccess::range(in)->hi);
      return true;
    default:
      *out = Value();
      return true;
  }
}

// ---- date

bool Date(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  std::string fbuf;
  const std::string_view format = ToView(a[0], fbuf);
  if (format.empty()) {
    *out = in;
    return true;
  }
  std::optional<Time> t;
  if (in.kind() == ValueKind::kInt) {
    t = Time{in.AsInt(), 0, 0, true};
  } else if (in.is_string()) {
    const std::string_view s = in.AsString();
    if (s.empty()) {
      *out = in;
      return true;
    }
    std::string lower;
    Downcase(s, lower);
    if (lower == "now" || lower == "today") {
      const core::Millis now = r.Now();
      const int64_t secs = now >= 0 ? now / 1000 : -((-now + 999) / 1000);
      t = Time{secs, static_cast<int32_t>((now - secs * 1000) * 1000000), 0, true};
    } else if (!lower.empty() && std::all_of(lower.begin(), lower.end(),
                                             [](char c) { return c >= '0' && c <= '9'; })) {
      t = Time{StringToI(lower), 0, 0, true};
    } else {
      t = ParseTime(lower);
    }
  }
  if (!t) {
    *out = in;
    return true;
  }
  std::string res;
  if (!Strftime(*t, format, res)) return r.FailB("invalid format: " + std::string(format));
  *out = Str(r, res);
  return true;
}

// ---- math

Value FromDecimal(const Decimal& d) { return Value::Float(d.ToDouble()); }

bool Abs(Renderer& r, const Value& in, Args, size_t, Value* out) {
  const Number x = ToNumber(in);
  if (x.is_int) {
    if (x.i == INT64_MIN) return r.FailB("integer overflow");
    *out = Value::Int(x.i < 0 ? -x.i : x.i);
  } else {
    *out = FromDecimal(x.d.Abs());
  }
  return true;
}

enum class Op { kPlus, kMinus, kTimes, kDiv, kMod };

bool Apply(Renderer& r, const Value& in, const Value& arg, Op op, Value* out) {
  const Number x = ToNumber(in), y = ToNumber(arg);
  if (x.is_int && y.is_int) {
    int64_t res = 0;
    bool overflow = false;
    switch (op) {
      case Op::kPlus:
        overflow = __builtin_add_overflow(x.i, y.i, &res);
        break;
      case Op::kMinus:
        overflow = __builtin_sub_overflow(x.i, y.i, &res);
        break;
      case Op::kTimes:
        overflow = __builtin_mul_overflow(x.i, y.i, &res);
        break;
      case Op::kDiv:
      case Op::kMod: {
        if (y.i == 0) return r.FailB("divided by 0");
        if (x.i == INT64_MIN && y.i == -1) {
          overflow = op == Op::kDiv;
          res = 0;
          break;
        }
        int64_t q = x.i / y.i, m = x.i % y.i;
        if (m != 0 && ((m < 0) != (y.i < 0))) {
          --q;
          m += y.i;
        }
        res = op == Op::kDiv ? q : m;
        break;
      }
    }
    if (overflow) return r.FailB("integer overflow (nudge keeps integers in 64 bits)");
    *out = Value::Int(res);
    return true;
  }
  const Decimal a = x.AsDecimal(), b = y.AsDecimal();
  switch (op) {
    case Op::kPlus:
      *out = FromDecimal(Decimal::Add(a, b));
      return true;
    case Op::kMinus:
      *out = FromDecimal(Decimal::Sub(a, b));
      return true;
    case Op::kTimes:
      *out = FromDecimal(Decimal::Mul(a, b));
      return true;
    case Op::kDiv:
      *out = FromDecimal(Decimal::Div(a, b));
      return true;
    case Op::kMod: {
      auto m = Decimal::Mod(a, b);
      if (!m) return r.FailB("divided by 0");
      *out = FromDecimal(*m);
      return true;
    }
  }
  return true;
}

bool Plus(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return Apply(r, in, a[0], Op::kPlus, out);
}
bool Minus(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return Apply(r, in, a[0], Op::kMinus, out);
}
bool Times(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return Apply(r, in, a[0], Op::kTimes, out);
}
bool DividedBy(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return Apply(r, in, a[0], Op::kDiv, out);
}
bool Modulo(Renderer& r, const Value& in, Args a, size_t, Value* out) {
  return Apply(r, in, a[0], Op::kMod, out);
}

bool Round(Renderer& r, const Value& in, Args a, size_t n, Value* out) {
  const Value nv = n > 0 ? a[0] : Value::Int(0);
  const Number x = ToNumber(in);
  const Number digits_num = ToNumber(nv);
  int64_t digits = 0;
  if (digits_num.is_int) {
    digits = digits_num.i;
  } else if (auto f = digits_num.d.Floor()) {
    digits = *f;
  }
  if (x.is_int) {
    if (digits >= 0) {
      *out = Value::Int(x.i);
      return true;
    }
    // Integer#round(-k): half away from zero.
    if (digits < -18) {
      *out = Value::Int(0);
      return true;
    }
    int64_t p = 1;
    for (int64_t k = 0; k < -digits; ++k) p *= 10;
    int64_t q = x.i / p, rem = x.i % p;
    if (rem < 0) rem = -rem;
    if (rem * 2 >= p) q += x.i < 0 ? -1 : 1;
    int64_t res = 0;
    if (__builtin_mul_overflow(q, p, &res)) return r.FailB("integer overflow");
    *out = Value::Int(res);
    return true;
  }
  const Decimal rounded = x.d.Round(digits);
  const double d = rounded.ToDouble();
  // BigDecimal#round(n) returns an Integer for n < 1.
  if (digits < 1) {
    if (!std::isfinite(d)) return r.FailB(ToStr(Value::Float(d)));
    if (d >= 9.2e18 || d <= -9.2e18) return r.FailB("integer overflow");
    *out = Value::Int(static_cast<int64_t>(d));
  } else {
    *out = Value::Float(d);
  }
  return true;
}

bool Ceil(Renderer& r, const Value& in, Args, size_t, Value* out) {
  const Number x = ToNumber(in);
  if (x.is_int) {
    *out = Value::Int(x.i);
    return true;
  }
  auto c = x.d.Ceil();
  if (!c) return r.FailB(ToStr(Value::Float(x.d.ToDouble())));
  *out = Value::Int(*c);
  return true;
}

bool Floor(Renderer& r, const Value& in, Args, size_t, Value* out) {
  const Number x = ToNumber(in);
  if (x.is_int) {
    *out = Value::Int(x.i);
    return true;
  }
  auto f = x.d.Floor();
  if (!f) return r.FailB(ToStr(Value::Float(x.d.ToDouble())));
  *out = Value::Int(*f);
  return true;
}

Value NumberValue(const Number& n) {
  return n.is_int ? Value::Int(n.i) : Value::Float(n.d.ToDouble());
}

bool AtLeast(Renderer&, const Value& in, Args a, size_t, Value* out) {
  const Number min = ToNumber(a[0]), x = ToNumber(in);
  const bool take_min =
      min.is_int && x.is_int ? min.i > x.i : Decimal::Cmp(min.AsDecimal(), x.AsDecimal()) > 0;
  *out = NumberValue(take_min ? min : x);
  return true;
}

bool AtMost(Renderer&, const Value& in, Args a, size_t, Value* out) {
  const Number max = ToNumber(a[0]), x = ToNumber(in);
  const bool take_max =
      max.is_int && x.is_int ? max.i < x.i : Decimal::Cmp(max.AsDecimal(), x.AsDecimal()) < 0;
  *out = NumberValue(take_max ? max : x);
  return true;
}

bool Default(Renderer&, const Value& in, Args a, size_t n, Value* out) {
  const Value def = n > 0 ? a[0] : Value::Borrowed("");
  bool allow_false = false;
  if (n > 1 && a[1].kind() == ValueKind::kHash) {
    const HashEntry* e = ValueAccess::hash(a[1])->Find("allow_false");
    allow_false = e != nullptr && e->value.truthy();
  }
  const bool false_check = allow_false ? in.is_nil() : !in.truthy();
  bool empty = false;
  if (in.is_string()) {
    empty = in.AsString().empty();
  } else if (in.kind() == ValueKind::kArray || in.kind() == ValueKind::kHash) {
    empty = in.size() == 0;
  }
  *out = false_check || empty ? def : in;
  return true;
}

// ---- additions: json (Shopify's) and raw (HTML mode's opt-out)

void AppendJson(std::string& out, const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNil:
      out += "null";
      return;
    case ValueKind::kBool:
      out += v.AsBool() ? "true" : "false";
      return;
    case ValueKind::kInt:
      AppendInt(out, v.AsInt());
      return;
    case ValueKind::kFloat:
      if (std::isfinite(v.AsFloat())) {
        AppendFloat(out, v.AsFloat());
      } else {
        out += "null";
      }
      return;
    case ValueKind::kString:
      if (IsValidUtf8(v.AsString())) {
        core::AppendJsonString(out, v.AsString());
      } else {
        core::AppendJsonString(out, "");
      }
      return;
    case ValueKind::kArray:
      out += '[';
      for (uint32_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += ',';
        AppendJson(out, ValueAccess::items(v)[i]);
      }
      out += ']';
      return;
    case ValueKind::kHash: {
      out += '{';
      const HashRep* h = ValueAccess::hash(v);
      for (uint32_t i = 0; i < h->size; ++i) {
        if (i > 0) out += ',';
        core::AppendJsonString(out, h->entries[i].key_view());
        out += ':';
        AppendJson(out, h->entries[i].value);
      }
      out += '}';
      return;
    }
    default: {
      std::string s;
      AppendToS(s, v);
      core::AppendJsonString(out, s);
    }
  }
}

bool Json(Renderer& r, const Value& in, Args, size_t, Value* out) {
  std::string res;
  AppendJson(res, in);
  *out = Str(r, res);
  return true;
}

bool Raw(Renderer&, const Value& in, Args, size_t, Value* out) {
  *out = in.WithSafe(true);
  return true;
}

}  // namespace

const std::vector<BuiltinFilter>& BuiltinFilters() {
  static const std::vector<BuiltinFilter> kFilters = {
      {"abs", 0, 0, Abs},
      {"append", 1, 1, Append},
      {"at_least", 1, 1, AtLeast},
      {"at_most", 1, 1, AtMost},
      {"base64_decode", 0, 0, Base64Decode},
      {"base64_encode", 0, 0, Base64Encode},
      {"base64_url_safe_decode", 0, 0, Base64UrlSafeDecode},
      {"base64_url_safe_encode", 0, 0, Base64UrlSafeEncode},
      {"capitalize", 0, 0, CapitalizeFilter},
      {"ceil", 0, 0, Ceil},
      {"compact", 0, 1, Compact},
      {"concat", 1, 1, Concat},
      {"date", 1, 1, Date},
      {"default", 0, 2, Default},
      {"divided_by", 1, 1, DividedBy},
      {"downcase", 0, 0, DowncaseFilter},
      {"escape", 0, 0, Escape},
      {"escape_once", 0, 0, EscapeOnce},
      {"first", 0, 0, First},
      {"floor", 0, 0, Floor},
      {"h", 0, 0, Escape},
      {"join", 0, 1, Join},
      {"json", 0, 0, Json},
      {"last", 0, 0, Last},
      {"lstrip", 0, 0, LStripFilter},
      {"map", 1, 1, Map},
      {"minus", 1, 1, Minus},
      {"modulo", 1, 1, Modulo},
      {"newline_to_br", 0, 0, NewlineToBr},
      {"plus", 1, 1, Plus},
      {"prepend", 1, 1, Prepend},
      {"raw", 0, 0, Raw},
      {"remove", 1, 1, Remove},
      {"remove_first", 1, 1, RemoveFirst},
      {"remove_last", 1, 1, RemoveLast},
      {"replace", 1, 2, Replace},
      {"replace_first", 1, 2, ReplaceFirst},
      {"replace_last", 2, 2, ReplaceLast},
      {"reverse", 0, 0, Reverse},
      {"round", 0, 1, Round},
      {"rstrip", 0, 0, RStripFilter},
      {"size", 0, 0, Size},
      {"slice", 1, 2, Slice},
      {"sort", 0, 1, Sort},
      {"sort_natural", 0, 1, SortNatural},
      {"split", 1, 1, SplitFilter},
      {"strip", 0, 0, StripFilter},
      {"strip_html", 0, 0, StripHtml},
      {"strip_newlines", 0, 0, StripNewlines},
      {"times", 1, 1, Times},
      {"truncate", 0, 2, Truncate},
      {"truncatewords", 0, 2, Truncatewords},
      {"uniq", 0, 1, Uniq},
      {"upcase", 0, 0, UpcaseFilter},
      {"url_decode", 0, 0, UrlDecode},
      {"url_encode", 0, 0, UrlEncode},
      {"where", 1, 2, Where},
  };
  return kFilters;
}

}  // namespace nudge::content::internal
