#include "channel/feedback/mime.h"

#include <algorithm>
#include <cstdint>

#include "channel/feedback/internal/text.h"

namespace nudge::channel {

using feedback_internal::IEquals;
using feedback_internal::IsSpace;
using feedback_internal::Lower;
using feedback_internal::ToLower;
using feedback_internal::Trim;

size_t ParseMimeFields(std::string_view text, std::vector<MimeField>& fields, size_t max_fields) {
  size_t pos = 0;
  size_t added = 0;
  bool first = true;
  bool continuing = false;  // the last line was a field we kept: continuations belong to it
  while (pos < text.size()) {
    const size_t eol = text.find('\n', pos);
    const size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
    std::string_view line = text.substr(pos, next - pos);
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return next;
    if (first && line.substr(0, 5) == "From ") {  // an mbox separator
      first = false;
      pos = next;
      continue;
    }
    first = false;
    if (line.front() == ' ' || line.front() == '\t') {
      const std::string_view more = Trim(line);
      if (continuing && !more.empty()) {
        std::string& value = fields.back().value;
        if (!value.empty()) value += ' ';
        value += more;
      }
      pos = next;
      continue;
    }
    const size_t colon = line.find(':');
    std::string_view name =
        colon == std::string_view::npos ? std::string_view() : Trim(line.substr(0, colon));
    bool valid = !name.empty();
    for (char c : name) {
      if (c <= ' ' || c == 0x7F || static_cast<unsigned char>(c) >= 0x80) valid = false;
    }
    if (!valid) return pos;  // not a header: the body starts on this line
    if (added < max_fields) {
      fields.push_back({std::string(name), std::string(Trim(line.substr(colon + 1)))});
      ++added;
      continuing = true;
    } else {
      continuing = false;
    }
    pos = next;
  }
  return text.size();
}

std::string_view FindField(const std::vector<MimeField>& fields, std::string_view name) {
  for (const MimeField& f : fields) {
    if (IEquals(f.name, name)) return f.value;
  }
  return {};
}

std::string_view MimeNode::Param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

namespace {

// The value with RFC 5322 comments removed (outside quoted strings).
std::string StripComments(std::string_view value) {
  std::string out;
  int depth = 0;
  bool quoted = false;
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (quoted) {
      out += c;
      if (c == '\\' && i + 1 < value.size()) {
        out += value[++i];
      } else if (c == '"') {
        quoted = false;
      }
    } else if (depth > 0) {
      if (c == '\\') {
        ++i;
      } else if (c == '(') {
        ++depth;
      } else if (c == ')') {
        --depth;
      }
    } else if (c == '(') {
      depth = 1;
    } else {
      if (c == '"') quoted = true;
      out += c;
    }
  }
  return out;
}

std::string Unquote(std::string_view v) {
  v = Trim(v);
  if (v.empty() || v.front() != '"') return std::string(v);
  std::string out;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      out += v[++i];
    } else if (v[i] == '"') {
      break;
    } else {
      out += v[i];
    }
  }
  return out;
}

}  // namespace

std::string ParseContentType(std::string_view value,
                             std::vector<std::pair<std::string, std::string>>& params) {
  const std::string text = StripComments(value);
  std::vector<std::string_view> pieces;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || (text[i] == ';' && !quoted)) {
      pieces.push_back(std::string_view(text).substr(start, i - start));
      start = i + 1;
    } else if (text[i] == '"') {
      quoted = !quoted;
    } else if (text[i] == '\\' && quoted) {
      ++i;
    }
  }
  for (size_t i = 1; i < pieces.size(); ++i) {
    const size_t eq = pieces[i].find('=');
    if (eq == std::string_view::npos) continue;
    std::string name = ToLower(Trim(pieces[i].substr(0, eq)));
    if (name.empty()) continue;
    params.emplace_back(std::move(name), Unquote(pieces[i].substr(eq + 1)));
  }
  std::string type = ToLower(Trim(pieces.empty() ? std::string_view() : pieces[0]));
  const size_t slash = type.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == type.size()) return "";
  for (char c : type) {
    if (c <= ' ' || static_cast<unsigned char>(c) >= 0x7F) return "";
  }
  return type;
}

std::string DecodeBase64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t bits = 0;
  int count = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z') {
      v = ch - 'A';
    } else if (ch >= 'a' && ch <= 'z') {
      v = ch - 'a' + 26;
    } else if (ch >= '0' && ch <= '9') {
      v = ch - '0' + 52;
    } else if (ch == '+' || ch == '-') {
      v = 62;
    } else if (ch == '/' || ch == '_') {
      v = 63;
    } else {
      if (ch == '=') count = 0;  // padding ends a group (encoded blocks may be concatenated)
      continue;
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = Lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string DecodeQuotedPrintable(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c != '=') {
      out += c;
      continue;
    }
    if (i + 2 < in.size()) {
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    // A soft line break: '=', optional trailing white space, then the end of the line.
    size_t j = i + 1;
    while (j < in.size() && (in[j] == ' ' || in[j] == '\t')) ++j;
    if (j < in.size() && in[j] == '\r') ++j;
    if (j == in.size() || in[j] == '\n') {
      i = j;  // the loop's ++i steps past the '\n'
      continue;
    }
    out += '=';
  }
  return out;
}

namespace {

void AppendLatin1(std::string& out, std::string_view in) {
  for (char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
}

// Decodes one encoded word "=?charset?enc?text?=" at value[pos]; sets `end` past it.
bool DecodeWord(std::string_view value, size_t pos, std::string& out, size_t& end) {
  if (value.substr(pos, 2) != "=?") return false;
  // RFC 2047 words are at most 75 characters; looking no further keeps this linear.
  const size_t window_end = std::min(value.size(), pos + 256);
  value = value.substr(0, window_end);
  const size_t q1 = value.find('?', pos + 2);
  if (q1 == std::string_view::npos || q1 + 2 >= value.size() || value[q1 + 2] != '?') {
    return false;
  }
  const size_t close = value.find("?=", q1 + 3);
  if (close == std::string_view::npos) return false;
  std::string charset = ToLower(value.substr(pos + 2, q1 - pos - 2));
  const size_t star = charset.find('*');  // RFC 2231 language suffix
  if (star != std::string::npos) charset.resize(star);
  const char enc = Lower(value[q1 + 1]);
  const std::string_view text = value.substr(q1 + 3, close - q1 - 3);
  if (text.find(' ') != std::string_view::npos) return false;
  std::string raw;
  if (enc == 'b') {
    raw = DecodeBase64(text);
  } else if (enc == 'q') {
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '_') {
        raw += ' ';
      } else if (text[i] == '=' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
                 HexValue(text[i + 2]) >= 0) {
        raw += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
        i += 2;
      } else {
        raw += text[i];
      }
    }
  } else {
    return false;
  }
  if (charset == "iso-8859-1" || charset == "latin1" || charset == "windows-1252" ||
      charset == "cp1252" || charset == "iso-8859-15") {
    AppendLatin1(out, raw);
  } else {
    out += raw;
  }
  end = close + 2;
  return true;
}

}  // namespace

std::string DecodeHeaderWords(std::string_view value) {
  std::string out;
  size_t pos = 0;
  bool last_was_word = false;
  size_t pending_space_start = 0;  // white space after an encoded word, dropped if another follows
  while (pos < value.size()) {
    size_t end = 0;
    std::string word;
    if (value[pos] == '=' && DecodeWord(value, pos, word, end)) {
      if (last_was_word) out.resize(pending_space_start);
      out += word;
      pos = end;
      last_was_word = true;
      pending_space_start = out.size();
      continue;
    }
    if (!IsSpace(value[pos])) last_was_word = false;
    out += value[pos++];
  }
  return out;
}

namespace {

struct Context {
  const MimeParseLimits& limits;
  size_t parts = 1;
  bool truncated = false;
};

// The parts between the delimiter lines of `boundary` in `body`.
std::vector<std::string_view> SplitMultipart(std::string_view body, std::string_view boundary) {
  const std::string delimiter = "--" + std::string(boundary);
  std::vector<std::string_view> parts;
  size_t part_start = std::string_view::npos;
  size_t pos = 0;
  for (;;) {
    const size_t hit = body.find(delimiter, pos);
    if (hit == std::string_view::npos) break;
    pos = hit + 1;
    if (hit != 0 && body[hit - 1] != '\n') continue;
    const size_t after = hit + delimiter.size();
    const size_t eol = body.find('\n', after);
    const size_t line_end = eol == std::string_view::npos ? body.size() : eol;
    std::string_view rest = body.substr(after, line_end - after);
    const bool close = rest.substr(0, 2) == "--";
    if (close) rest.remove_prefix(2);
    if (!Trim(rest).empty()) continue;  // a longer boundary that only starts like ours
    if (part_start != std::string_view::npos) {
      size_t end = hit;
      if (end > part_start && body[end - 1] == '\n') --end;
      if (end > part_start && body[end - 1] == '\r') --end;
      parts.push_back(body.substr(part_start, end - part_start));
    }
    if (close) return parts;
    part_start = eol == std::string_view::npos ? body.size() : eol + 1;
    pos = part_start;
  }
  // No close delimiter (a truncated report): the last part runs to the end.
  if (part_start != std::string_view::npos && part_start < body.size()) {
    parts.push_back(body.substr(part_start));
  }
  return parts;
}

void ParseNode(std::string_view text, size_t depth, std::string_view default_type, Context& ctx,
               MimeNode& node) {
  const size_t body_at = ParseMimeFields(text, node.headers, ctx.limits.max_fields);
  const std::string_view content_type = node.Header("Content-Type");
  std::string type = content_type.empty() ? "" : ParseContentType(content_type, node.params);
  node.type = type.empty() ? std::string(default_type) : std::move(type);

  std::string_view body = text.substr(body_at);
  std::string decoded;
  const std::string encoding = ToLower(Trim(node.Header("Content-Transfer-Encoding")));
  if (encoding == "base64") {
    decoded = DecodeBase64(body);
    body = decoded;
  } else if (encoding == "quoted-printable") {
    decoded = DecodeQuotedPrintable(body);
    body = decoded;
  }

  const bool is_message = node.type == "message/rfc822" || node.type == "message/global";
  if (node.IsMultipart() || is_message) {
    if (depth >= ctx.limits.max_depth) {
      ctx.truncated = true;
    } else if (is_message) {
      if (ctx.parts < ctx.limits.max_parts) {
        ++ctx.parts;
        node.children.emplace_back();
        ParseNode(body, depth + 1, "text/plain", ctx, node.children.back());
        return;
      }
      ctx.truncated = true;
    } else {
      const std::string_view boundary = node.Param("boundary");
      if (!boundary.empty() && boundary.size() <= 200) {
        const std::string_view child_type =
            node.type == "multipart/digest" ? "message/rfc822" : "text/plain";
        for (std::string_view part : SplitMultipart(body, boundary)) {
          if (ctx.parts >= ctx.limits.max_parts) {
            ctx.truncated = true;
            break;
          }
          ++ctx.parts;
          node.children.emplace_back();
          ParseNode(part, depth + 1, child_type, ctx, node.children.back());
        }
        if (!node.children.empty()) return;
      }
    }
  }
  node.body = decoded.empty() ? std::string(body) : std::move(decoded);
}

}  // namespace

MimeTree ParseMimeTree(std::string_view message, const MimeParseLimits& limits) {
  MimeTree tree;
  Context ctx{limits};
  ParseNode(message, 0, "text/plain", ctx, tree.root);
  tree.truncated = ctx.truncated;
  return tree;
}

}  // namespace nudge::channel
