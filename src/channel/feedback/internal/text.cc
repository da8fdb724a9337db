#include "channel/feedback/internal/text.h"

#include <algorithm>
#include <cstdint>

#include "channel/feedback/feedback.h"

namespace nudge::channel::feedback_internal {

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool IStartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && IEquals(s.substr(0, prefix.size()), prefix);
}

size_t IFind(std::string_view haystack, std::string_view needle, size_t from) {
  if (from > haystack.size()) return std::string_view::npos;
  auto it = std::search(haystack.begin() + static_cast<std::ptrdiff_t>(from), haystack.end(),
                        needle.begin(), needle.end(),
                        [](char a, char b) { return Lower(a) == Lower(b); });
  if (it == haystack.end() && !needle.empty()) return std::string_view::npos;
  return static_cast<size_t>(it - haystack.begin());
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i] (non-ASCII lead byte), or 0.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  // C1 control characters (U+0080..U+009F) are control characters too.
  if (cp < 0xA0) return 0;
  return len;
}

bool IsLocalChar(char c) {
  if (static_cast<unsigned char>(c) >= 0x80) return true;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c)) return true;
  return std::string_view(".!#$%&'*+/=?^_`{|}~-").find(c) != std::string_view::npos;
}

bool IsDomainChar(char c) {
  if (static_cast<unsigned char>(c) >= 0x80) return true;
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '.' || c == '-';
}

}  // namespace

std::string CleanText(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  bool pending_space = false;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::string_view piece;
    size_t advance = 1;
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    if (c < 0x20 || c == 0x7F || c == ' ') {
      pending_space = true;
      ++i;
      continue;
    }
    if (c < 0x80) {
      piece = s.substr(i, 1);
    } else {
      const size_t len = Utf8Length(s, i);
      if (len == 0) {
        piece = kReplacement;
      } else {
        piece = s.substr(i, len);
        advance = len;
      }
    }
    const size_t need = piece.size() + ((pending_space && !out.empty()) ? 1 : 0);
    if (out.size() + need > max_bytes) break;
    if (pending_space && !out.empty()) out += ' ';
    pending_space = false;
    out += piece;
    i += advance;
  }
  return out;
}

std::vector<std::string> FindAddresses(std::string_view text, size_t max) {
  std::vector<std::string> out;
  size_t at = text.find('@');
  while (at != std::string_view::npos && out.size() < max) {
    size_t begin = at;
    while (begin > 0 && at - begin < 64 && IsLocalChar(text[begin - 1])) --begin;
    size_t end = at + 1;
    while (end < text.size() && end - at <= 253 && IsDomainChar(text[end])) ++end;
    std::string_view local = text.substr(begin, at - begin);
    std::string_view domain = text.substr(at + 1, end - at - 1);
    while (!local.empty() && local.front() == '.') local.remove_prefix(1);
    while (!domain.empty() && (domain.back() == '.' || domain.back() == '-')) {
      domain.remove_suffix(1);
    }
    const size_t dot = domain.find('.');
    if (!local.empty() && dot != std::string_view::npos && dot != 0 &&
        domain.find("..") == std::string_view::npos) {
      std::string address = NormalizeRecipient(std::string(local) + "@" + std::string(domain));
      if (!address.empty() && std::find(out.begin(), out.end(), address) == out.end()) {
        out.push_back(std::move(address));
      }
    }
    at = text.find('@', at + 1);
  }
  return out;
}

std::string_view DropFieldType(std::string_view value) {
  const size_t semi = value.find(';');
  if (semi == std::string_view::npos || semi > 20) return Trim(value);
  for (char c : value.substr(0, semi)) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '-' || c == ' ')) {
      return Trim(value);
    }
  }
  return Trim(value.substr(semi + 1));
}

std::string MtaName(std::string_view value) {
  value = DropFieldType(value);
  size_t end = 0;
  while (end < value.size() && !IsSpace(value[end]) && value[end] != '(') ++end;
  value = value.substr(0, end);
  while (!value.empty() && value.back() == '.') value.remove_suffix(1);
  return CleanText(value, 255);
}

std::string StatusToken(std::string_view value) {
  value = Trim(value);
  size_t end = 0;
  while (end < value.size() && !IsSpace(value[end]) && value[end] != '(') ++end;
  const std::string_view token = value.substr(0, end);
  std::string code = ExtractStatusCode(token);
  return code == token ? code : "";
}

}  // namespace nudge::channel::feedback_internal
