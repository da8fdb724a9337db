#include "content/text.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

namespace nudge::content {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
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

struct Entity {
  const char* name;
  uint32_t cp;
};
constexpr Entity kEntities[] = {
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122}, {"hellip", 0x2026},
    {"mdash", 0x2014}, {"ndash", 0x2013}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"laquo", 0xAB},   {"raquo", 0xBB},   {"euro", 0x20AC},  {"pound", 0xA3},
    {"yen", 0xA5},     {"cent", 0xA2},    {"middot", 0xB7},  {"bull", 0x2022},  {"zwnj", 0x200C},
    {"zwj", 0x200D},   {"shy", 0xAD},     {"deg", 0xB0},     {"times", 0xD7},   {"auml", 0xE4},
    {"ouml", 0xF6},    {"uuml", 0xFC},    {"Auml", 0xC4},    {"Ouml", 0xD6},    {"Uuml", 0xDC},
    {"szlig", 0xDF},   {"eacute", 0xE9},  {"egrave", 0xE8},  {"agrave", 0xE0},  {"ccedil", 0xE7},
    {"ntilde", 0xF1},  {"iexcl", 0xA1},   {"iquest", 0xBF},  {"sect", 0xA7},
};

// Decodes the entity starting at s[i] == '&'; on success appends it and advances i.
bool DecodeEntity(std::string_view s, size_t& i, std::string& out) {
  const size_t semi = s.find(';', i + 1);
  if (semi == std::string_view::npos || semi - i > 12) return false;
  std::string_view name = s.substr(i + 1, semi - i - 1);
  if (name.empty()) return false;
  uint32_t cp = 0;
  if (name[0] == '#') {
    const bool hex = name.size() > 1 && (name[1] == 'x' || name[1] == 'X');
    std::string_view digits = name.substr(hex ? 2 : 1);
    if (digits.empty()) return false;
    for (char c : digits) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (hex && c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (hex && c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return false;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(d);
      if (cp > 0x10FFFF) return false;
    }
  } else {
    bool found = false;
    for (const Entity& e : kEntities) {
      if (name == e.name) {
        cp = e.cp;
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  if (cp == 0xA0) cp = ' ';
  if (cp == 0xAD || cp == 0x200C || cp == 0x200D) {
    i = semi + 1;
    return true;  // invisible: dropped
  }
  AppendUtf8(cp, out);
  i = semi + 1;
  return true;
}

// The value of attribute `name` in a tag's text ("a href=\"x\" class=y").
std::string Attribute(std::string_view tag, std::string_view name) {
  size_t i = 0;
  // Skip the tag name.
  while (i < tag.size() && !std::isspace(static_cast<unsigned char>(tag[i]))) ++i;
  while (i < tag.size()) {
    while (i < tag.size() && (std::isspace(static_cast<unsigned char>(tag[i])) || tag[i] == '/'))
      ++i;
    const size_t ns = i;
    while (i < tag.size() && tag[i] != '=' && !std::isspace(static_cast<unsigned char>(tag[i])) &&
           tag[i] != '/')
      ++i;
    std::string_view attr = tag.substr(ns, i - ns);
    while (i < tag.size() && std::isspace(static_cast<unsigned char>(tag[i]))) ++i;
    std::string value;
    if (i < tag.size() && tag[i] == '=') {
      ++i;
      while (i < tag.size() && std::isspace(static_cast<unsigned char>(tag[i]))) ++i;
      if (i < tag.size() && (tag[i] == '"' || tag[i] == '\'')) {
        const char q = tag[i++];
        const size_t vs = i;
        while (i < tag.size() && tag[i] != q) ++i;
        value = std::string(tag.substr(vs, i - vs));
        if (i < tag.size()) ++i;
      } else {
        const size_t vs = i;
        while (i < tag.size() && !std::isspace(static_cast<unsigned char>(tag[i]))) ++i;
        value = std::string(tag.substr(vs, i - vs));
      }
    }
    if (attr.empty()) {
      if (i < tag.size()) ++i;
      continue;
    }
    if (IEquals(attr, name)) {
      std::string decoded;
      for (size_t k = 0; k < value.size();) {
        if (value[k] == '&' && DecodeEntity(value, k, decoded)) continue;
        decoded += value[k++];
      }
      return decoded;
    }
  }
  return "";
}

bool IsBlock(std::string_view t) {
  static constexpr const char* kBlocks[] = {
      "div",     "table",   "tr",     "ul",     "ol",         "dl",     "dt",    "dd",
      "section", "article", "header", "footer", "blockquote", "center", "tbody", "thead",
      "tfoot",   "form",    "nav",    "aside",  "main",       "figure", "pre",   "address"};
  for (const char* b : kBlocks)
    if (IEquals(t, b)) return true;
  return false;
}

bool IsParagraph(std::string_view t) {
  return IEquals(t, "p") ||
         (t.size() == 2 && (t[0] == 'h' || t[0] == 'H') && t[1] >= '1' && t[1] <= '6');
}

class TextBuilder {
 public:
  void Text(std::string_view s) {
    for (char c : s) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        pending_space_ = true;
      } else {
        Flush();
        out_ += c;
        at_line_start_ = false;
      }
    }
  }
  void Raw(std::string_view s) {  // inside <pre>: keep the spacing
    Flush();
    for (char c : s) {
      if (c == '\r') continue;
      out_ += c;
      at_line_start_ = c == '\n';
    }
  }
  void Break(int newlines) {  // 1: a new line, 2: a blank line
    pending_space_ = false;
    if (out_.empty()) return;
    want_newlines_ = std::max(want_newlines_, newlines);
  }
  void Prefix(std::string_view s) {
    Flush();
    out_ += s;
    pending_space_ = false;
    at_line_start_ = false;
    suppress_space_ = true;
  }
  std::string Finish() {
    // Trim trailing spaces on each line and trailing blank lines.
    std::string result;
    result.reserve(out_.size());
    size_t start = 0;
    while (start <= out_.size()) {
      size_t end = out_.find('\n', start);
      if (end == std::string::npos) end = out_.size();
      std::string_view line(out_.data() + start, end - start);
      while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
      result += line;
      if (end < out_.size()) result += '\n';
      start = end + 1;
    }
    while (!result.empty() && (result.back() == '\n' || result.back() == ' ')) result.pop_back();
    if (!result.empty()) result += '\n';
    return result;
  }
  bool LastWas(std::string_view s) const {
    return out_.size() >= s.size() && out_.compare(out_.size() - s.size(), s.size(), s) == 0;
  }

 private:
  void Flush() {
    if (want_newlines_ > 0) {
      int have = 0;
      for (size_t i = out_.size(); i > 0 && out_[i - 1] == '\n'; --i) ++have;
      for (int i = have; i < want_newlines_; ++i) out_ += '\n';
      want_newlines_ = 0;
      pending_space_ = false;
      at_line_start_ = true;
    }
    if (pending_space_ && !at_line_start_ && !suppress_space_ && !out_.empty()) out_ += ' ';
    pending_space_ = false;
    suppress_space_ = false;
  }
  std::string out_;
  bool pending_space_ = false;
  bool at_line_start_ = true;
  bool suppress_space_ = false;
  int want_newlines_ = 0;
};

}  // namespace

std::string HtmlToText(std::string_view html) {
  TextBuilder b;
  struct Link {
    std::string href;
    std::string text;
    size_t depth;
  };
  std::vector<Link> links;
  std::string captured;  // text of the link being read
  int pre = 0;
  int list_depth = 0;
  std::vector<int> ordered_counters;  // per open list: 0 for <ul>, the next number for <ol>
  auto emit_text = [&](std::string_view text) {
    if (!links.empty()) links.back().text += std::string(text);
    if (pre > 0) {
      b.Raw(text);
    } else {
      b.Text(text);
    }
  };
  size_t i = 0;
  std::string chunk;
  auto flush_chunk = [&] {
    if (!chunk.empty()) emit_text(chunk);
    chunk.clear();
  };
  while (i < html.size()) {
    const char c = html[i];
    if (c == '&') {
      std::string decoded;
      size_t k = i;
      if (DecodeEntity(html, k, decoded)) {
        chunk += decoded;
        i = k;
        continue;
      }
      chunk += c;
      ++i;
      continue;
    }
    if (c != '<') {
      chunk += c;
      ++i;
      continue;
    }
    // Comments and declarations.
    if (html.compare(i, 4, "<!--") == 0) {
      const size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    if (i + 1 < html.size() && (html[i + 1] == '!' || html[i + 1] == '?')) {
      const size_t end = html.find('>', i);
      i = end == std::string_view::npos ? html.size() : end + 1;
      continue;
    }
    const bool closing = i + 1 < html.size() && html[i + 1] == '/';
    const size_t name_start = i + (closing ? 2 : 1);
    size_t name_end = name_start;
    while (name_end < html.size() && (std::isalnum(static_cast<unsigned char>(html[name_end])))) {
      ++name_end;
    }
    if (name_end == name_start) {  // a lone '<'
      chunk += c;
      ++i;
      continue;
    }
    // Find the end of the tag, respecting quoted attribute values.
    size_t j = name_end;
    char quote = 0;
    while (j < html.size()) {
      if (quote) {
        if (html[j] == quote) quote = 0;
      } else if (html[j] == '"' || html[j] == '\'') {
        quote = html[j];
      } else if (html[j] == '>') {
        break;
      }
      ++j;
    }
    const std::string_view name = html.substr(name_start, name_end - name_start);
    const std::string_view tag = html.substr(i + 1, (j < html.size() ? j : html.size()) - i - 1);
    i = j < html.size() ? j + 1 : html.size();
    flush_chunk();

    // Elements whose content is never text.
    if (!closing && (IEquals(name, "head") || IEquals(name, "style") || IEquals(name, "script") ||
                     IEquals(name, "title") || IEquals(name, "template"))) {
      const std::string close = "</" + std::string(name);
      size_t k = i;
      while (k < html.size()) {
        const size_t at = html.find("</", k);
        if (at == std::string_view::npos) {
          k = html.size();
          break;
        }
        if (IEquals(html.substr(at, close.size()), close)) {
          const size_t gt = html.find('>', at);
          k = gt == std::string_view::npos ? html.size() : gt + 1;
          break;
        }
        k = at + 2;
      }
      i = k;
      continue;
    }
    // Hidden blocks (preheaders): display:none.
    if (!closing && (IEquals(name, "div") || IEquals(name, "span"))) {
      std::string style = Attribute(tag, "style");
      style.erase(std::remove(style.begin(), style.end(), ' '), style.end());
      std::transform(style.begin(), style.end(), style.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (style.find("display:none") != std::string::npos) {
        int depth = 1;
        size_t k = i;
        while (k < html.size() && depth > 0) {
          const size_t at = html.find('<', k);
          if (at == std::string_view::npos) {
            k = html.size();
            break;
          }
          const bool close = at + 1 < html.size() && html[at + 1] == '/';
          const size_t ns = at + (close ? 2 : 1);
          if (IEquals(html.substr(ns, name.size()), name) &&
              (ns + name.size() >= html.size() ||
               !std::isalnum(static_cast<unsigned char>(html[ns + name.size()])))) {
            depth += close ? -1 : 1;
          }
          const size_t gt = html.find('>', at);
          k = gt == std::string_view::npos ? html.size() : gt + 1;
        }
        i = k;
        continue;
      }
    }

    if (IEquals(name, "br")) {
      if (!links.empty()) links.back().text += ' ';
      b.Break(1);
    } else if (IEquals(name, "hr")) {
      b.Break(1);
      b.Prefix("----------------------------------------");
      b.Break(1);
    } else if (IsParagraph(name)) {
      b.Break(2);
    } else if (IEquals(name, "ul") || IEquals(name, "ol")) {
      if (closing) {
        if (list_depth > 0) --list_depth;
        if (!ordered_counters.empty()) ordered_counters.pop_back();
      } else {
        ++list_depth;
        ordered_counters.push_back(IEquals(name, "ol") ? 1 : 0);
      }
      b.Break(list_depth == 0 ? 2 : 1);
    } else if (IEquals(name, "li")) {
      b.Break(1);
      if (!closing) {
        std::string prefix(static_cast<size_t>(std::max(0, list_depth - 1)) * 2, ' ');
        if (!ordered_counters.empty() && ordered_counters.back() > 0) {
          prefix += std::to_string(ordered_counters.back()++) + ". ";
        } else {
          prefix += "- ";
        }
        b.Prefix(prefix);
      }
    } else if (IEquals(name, "td") || IEquals(name, "th")) {
      if (closing) b.Text(" ");
    } else if (IEquals(name, "pre")) {
      pre += closing ? -1 : 1;
      if (pre < 0) pre = 0;
      b.Break(2);
    } else if (IsBlock(name)) {
      b.Break(1);
    } else if (IEquals(name, "a")) {
      if (!closing) {
        links.push_back({Attribute(tag, "href"), "", 0});
      } else if (!links.empty()) {
        Link link = std::move(links.back());
        links.pop_back();
        std::string text = link.text;
        auto trim = [](std::string s) {
          const size_t a = s.find_first_not_of(" \t\r\n");
          if (a == std::string::npos) return std::string();
          const size_t z = s.find_last_not_of(" \t\r\n");
          return s.substr(a, z - a + 1);
        };
        text = trim(text);
        const std::string& href = link.href;
        const bool show = !href.empty() && href[0] != '#' && href.rfind("mailto:", 0) != 0 &&
                          href.rfind("tel:", 0) != 0 && href != text &&
                          href.rfind("javascript:", 0) != 0;
        if (show) {
          if (text.empty()) {
            b.Text(" ");
            b.Text(href);
          } else {
            b.Text(" (" + href + ")");
          }
        }
        if (!links.empty()) links.back().text += link.text;
      }
    } else if (IEquals(name, "img") && !closing) {
      const std::string alt = Attribute(tag, "alt");
      if (!alt.empty()) emit_text(alt);
    }
  }
  flush_chunk();
  return b.Finish();
}

namespace {

// GSM 03.38 basic character set (as Unicode code points) and its extension table.
constexpr uint32_t kGsmBasic[] = {
    '@',   0xA3, '$',  0xA5,  0xE8, 0xE9,  0xF9,  0xEC,  0xF2,  0xC7,  '\n',  0xD8,  0xF8,
    '\r',  0xC5, 0xE5, 0x394, '_',  0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398,
    0x39E, 0xC6, 0xE6, 0xDF,  0xC9, ' ',   '!',   '"',   '#',   0xA4,  '%',   '&',   '\'',
    '(',   ')',  '*',  '+',   ',',  '-',   '.',   '/',   '0',   '1',   '2',   '3',   '4',
    '5',   '6',  '7',  '8',   '9',  ':',   ';',   '<',   '=',   '>',   '?',   0xA1,  'A',
    'B',   'C',  'D',  'E',   'F',  'G',   'H',   'I',   'J',   'K',   'L',   'M',   'N',
    'O',   'P',  'Q',  'R',   'S',  'T',   'U',   'V',   'W',   'X',   'Y',   'Z',   0xC4,
    0xD6,  0xD1, 0xDC, 0xA7,  0xBF, 'a',   'b',   'c',   'd',   'e',   'f',   'g',   'h',
    'i',   'j',  'k',  'l',   'm',  'n',   'o',   'p',   'q',   'r',   's',   't',   'u',
    'v',   'w',  'x',  'y',   'z',  0xE4,  0xF6,  0xF1,  0xFC,  0xE0};
constexpr uint32_t kGsmExtension[] = {'\f', '^', '{', '}', '\\', '[', '~', ']', '|', 0x20AC};

// Decodes one UTF-8 code point at s[i]; invalid bytes decode as U+FFFD.
uint32_t NextCodePoint(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + static_cast<size_t>(len) > s.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += static_cast<size_t>(len);
  return cp;
}

}  // namespace

SmsSize MeasureSms(std::string_view utf8) {
  SmsSize size;
  size_t septets = 0, units = 0;
  for (size_t i = 0; i < utf8.size();) {
    const uint32_t cp = NextCodePoint(utf8, i);
    units += cp >= 0x10000 ? 2 : 1;
    if (std::find(std::begin(kGsmBasic), std::end(kGsmBasic), cp) != std::end(kGsmBasic)) {
      septets += 1;
    } else if (std::find(std::begin(kGsmExtension), std::end(kGsmExtension), cp) !=
               std::end(kGsmExtension)) {
      septets += 2;
    } else {
      size.unicode = true;
    }
  }
  size.units = size.unicode ? units : septets;
  if (size.units == 0) return size;
  const size_t single = size.unicode ? 70 : 160;
  const size_t multi = size.unicode ? 67 : 153;
  size.segments = size.units <= single ? 1 : static_cast<int>((size.units + multi - 1) / multi);
  return size;
}

}  // namespace nudge::content
