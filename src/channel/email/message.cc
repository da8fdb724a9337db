#include "channel/email/message.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>

#include "channel/email/internal/mime.h"
#include "core/crypto.h"
#include "core/json.h"

namespace nudge::channel {

// ---------------------------------------------------------------------------------------------
// Encoders

bool IsPrintableAscii(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c > 0x7E) return false;
  return true;
}

std::string NormalizeLineEndings(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

// Characters a Q encoded-word may carry literally in any context (RFC 2047 §5 (3)).
bool QLiteral(unsigned char c) {
  return std::isalnum(c) || c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // not reached for valid UTF-8
}

void AppendQ(std::string& out, unsigned char c) {
  if (c == ' ') {
    out += '_';
  } else if (QLiteral(c)) {
    out += static_cast<char>(c);
  } else {
    out += '=';
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
}

size_t QLength(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c == ' ' || QLiteral(c)) ? 1 : 3;
  return n;
}

size_t B64Length(size_t bytes) { return (bytes + 2) / 3 * 4; }

bool IsAtext(unsigned char c) {
  return std::isalnum(c) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
                                std::string_view::npos;
}

}  // namespace

std::vector<std::string> EncodedWords(std::string_view utf8, size_t first_max) {
  constexpr std::string_view kQPrefix = "=?UTF-8?Q?", kBPrefix = "=?UTF-8?B?", kSuffix = "?=";
  constexpr size_t kOverhead = 12;  // prefix + suffix
  const bool use_q = QLength(utf8) <= B64Length(utf8.size());
  first_max = std::clamp<size_t>(first_max, kOverhead + 12, 75);
  std::vector<std::string> words;
  size_t i = 0;
  while (i < utf8.size()) {
    const size_t budget = (words.empty() ? first_max : 75) - kOverhead;
    size_t end = i, used = 0;
    while (end < utf8.size()) {
      const size_t len = std::min(Utf8SequenceLength(utf8[end]), utf8.size() - end);
      const std::string_view cp = utf8.substr(end, len);
      const size_t cost = use_q ? QLength(cp) : B64Length(end + len - i) - used;
      if (used + cost > budget && end > i) break;
      used += cost;
      end += len;
    }
    std::string word(use_q ? kQPrefix : kBPrefix);
    const std::string_view chunk = utf8.substr(i, end - i);
    if (use_q) {
      for (unsigned char c : chunk) AppendQ(word, c);
    } else {
      word += core::Base64Encode(chunk);
    }
    word += kSuffix;
    words.push_back(std::move(word));
    i = end;
  }
  if (words.empty()) words.push_back(std::string(use_q ? kQPrefix : kBPrefix) + "?=");
  return words;
}

Status AppendFoldedTokens(std::string& out, std::string_view name,
                          const std::vector<std::string>& tokens) {
  out.append(name).append(":");
  size_t line = name.size() + 1;
  for (const std::string& token : tokens) {
    if (line + 1 + token.size() > kFoldAt && line > name.size() + 1) {
      out += "\r\n";
      line = 0;
    }
    if (line + 1 + token.size() > kMaxLineLength)
      return Status::Invalid("a part of this header is too long to fold under " +
                                 std::to_string(kMaxLineLength) + " characters",
                             std::string(name));
    out += ' ';
    out += token;
    line += 1 + token.size();
  }
  out += "\r\n";
  return Status::Ok();
}

Status AppendFoldedText(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ");
  size_t line = name.size() + 2;
  size_t i = 0;
  bool first = true;
  while (i < value.size()) {
    // A chunk is the whitespace before a word and the word: folding may go before it.
    size_t j = i;
    while (j < value.size() && (value[j] == ' ' || value[j] == '\t')) ++j;
    const bool has_word = j < value.size();
    while (j < value.size() && value[j] != ' ' && value[j] != '\t') ++j;
    const std::string_view chunk = value.substr(i, j - i);
    const bool can_fold = !first && has_word && (chunk[0] == ' ' || chunk[0] == '\t');
    if (can_fold && line + chunk.size() > kFoldAt) {
      out += "\r\n";
      line = 0;
    }
    if (line + chunk.size() > kMaxLineLength)
      return Status::Invalid("a word in this header is too long to fold under " +
                                 std::to_string(kMaxLineLength) + " characters",
                             std::string(name));
    out += chunk;
    line += chunk.size();
    first = false;
    i = j;
  }
  out += "\r\n";
  return Status::Ok();
}

std::vector<std::string> PhraseTokens(std::string_view name, size_t first_max) {
  if (!IsPrintableAscii(name)) return EncodedWords(name, first_max);
  bool plain = !name.empty() && name.front() != ' ' && name.back() != ' ';
  for (unsigned char c : name) plain = plain && (IsAtext(c) || c == ' ');
  if (name.find("  ") != std::string_view::npos) plain = false;
  if (plain) {
    std::vector<std::string> tokens;
    size_t i = 0;
    while (i <= name.size()) {
      size_t j = name.find(' ', i);
      if (j == std::string_view::npos) j = name.size();
      tokens.emplace_back(name.substr(i, j - i));
      i = j + 1;
    }
    return tokens;
  }
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c == '\t' ? ' ' : c;
  }
  quoted += '"';
  return {quoted};
}

std::string QuotedPrintable(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find("\r\n", pos);
    const bool has_break = eol != std::string_view::npos;
    if (!has_break) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    size_t len = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      const unsigned char c = line[i];
      const bool last = i + 1 == line.size();
      const bool encode = c == '=' || c > 0x7E || (c < 0x20 && c != '\t') ||
                          ((c == ' ' || c == '\t') && last) ||
                          (i == 0 && c == 'F' && line.substr(0, 5) == "From ");
      const size_t cost = encode ? 3 : 1;
      // Room for the soft break's '=' unless this is the line's last character.
      if (len + cost > (last ? 76u : 75u)) {
        out += "=\r\n";
        len = 0;
      }
      if (encode) {
        out += '=';
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      } else {
        out += static_cast<char>(c);
      }
      len += cost;
    }
    if (!has_break) {
      if (!line.empty()) out += "\r\n";
      break;
    }
    out += "\r\n";
    pos = eol + 2;
    if (pos == text.size()) break;
  }
  return out;
}

std::string Base64Lines(std::string_view data) {
  const std::string b64 = core::Base64Encode(data);
  std::string out;
  out.reserve(b64.size() + b64.size() / 38 + 2);
  for (size_t i = 0; i < b64.size(); i += 76) {
    out.append(b64, i, 76);
    out += "\r\n";
  }
  return out;
}

std::string_view EncodingName(BodyEncoding e) {
  switch (e) {
    case BodyEncoding::k7Bit:
      return "7bit";
    case BodyEncoding::kQuotedPrintable:
      return "quoted-printable";
    case BodyEncoding::kBase64:
      return "base64";
  }
  return "7bit";
}

BodyEncoding ChooseEncoding(std::string_view text) {
  // text is CRLF-normalized: a CR is always the start of a line break.
  size_t escaped = 0, longest = 0, line = 0;
  bool seven_bit = true;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    if (c == '\r') {
      longest = std::max(longest, line);
      line = 0;
      ++i;
      continue;
    }
    ++line;
    const bool printable = (c >= 0x20 && c < 0x7F) || c == '\t';
    seven_bit = seven_bit && printable;
    if (!printable || c == '=') ++escaped;
  }
  longest = std::max(longest, line);
  if (seven_bit && longest <= kMaxLineLength) return BodyEncoding::k7Bit;
  const size_t qp = text.size() + 2 * escaped + text.size() / 75 * 3;
  const size_t b64 = B64Length(text.size()) * 78 / 76;
  return qp <= b64 ? BodyEncoding::kQuotedPrintable : BodyEncoding::kBase64;
}

std::string EncodeBody(std::string_view text, BodyEncoding e) {
  switch (e) {
    case BodyEncoding::kQuotedPrintable:
      return QuotedPrintable(text);
    case BodyEncoding::kBase64:
      return Base64Lines(text);
    case BodyEncoding::k7Bit:
      break;
  }
  std::string out(text);
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Addresses

Status CheckAddress(std::string_view address) {
  if (address.empty()) return Status::Invalid("the address is empty");
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size())
    return Status::Invalid("'" + std::string(address) + "' is not an address (local@domain)");
  for (unsigned char c : address) {
    if (c >= 0x80)
      return Status::Invalid("'" + std::string(address) +
                             "' has non-ASCII characters; internationalized addresses (SMTPUTF8) "
                             "are not supported");
    if (c <= 0x20 || c == 0x7F || c == '<' || c == '>' || c == ',' || c == ';')
      return Status::Invalid("'" + std::string(address) +
                             "' has a space, control character or one of <>,; in it");
  }
  if (address.size() > 254) return Status::Invalid("the address is longer than 254 characters");
  return Status::Ok();
}

std::string AddressDomain(std::string_view address) {
  const size_t at = address.rfind('@');
  std::string domain(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
  for (char& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return domain;
}

Result<Mailbox> ParseMailbox(std::string_view text) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  for (unsigned char c : text)
    if (c < 0x20 && c != '\t') return Err(Status::Invalid("the mailbox has control characters"));
  if (!core::IsValidUtf8(text)) return Err(Status::Invalid("the mailbox is not valid UTF-8"));
  text = trim(text);
  Mailbox m;
  const size_t lt = text.rfind('<');
  if (lt == std::string_view::npos) {
    m.address = std::string(text);
  } else {
    if (text.back() != '>')
      return Err(
          Status::Invalid("expected the address to end with '>' in '" + std::string(text) + "'"));
    m.address = std::string(trim(text.substr(lt + 1, text.size() - lt - 2)));
    std::string_view name = trim(text.substr(0, lt));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      name = name.substr(1, name.size() - 2);
      for (size_t i = 0; i < name.size(); ++i) {
        if (name[i] == '\\' && i + 1 < name.size()) ++i;
        m.name += name[i];
      }
    } else {
      m.name = std::string(name);
    }
  }
  NUDGE_TRY(CheckAddress(m.address));
  return m;
}

// ---------------------------------------------------------------------------------------------
// The message

std::string FormatRfc5322Date(core::Millis ms) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

Status AppendMailboxHeader(std::string& out, std::string_view name, const Mailbox& m,
                           std::string_view field) {
  if (Status s = CheckAddress(m.address); !s.ok())
    return Status::Invalid(s.message(), std::string(field));
  if (!core::IsValidUtf8(m.name))
    return Status::Invalid("the display name is not valid UTF-8", std::string(field));
  for (unsigned char c : m.name)
    if (c < 0x20 && c != '\t')
      return Status::Invalid("the display name has control characters", std::string(field));
  std::vector<std::string> tokens;
  if (!m.name.empty()) {
    tokens = PhraseTokens(m.name, kFoldAt - name.size() - 2);
    tokens.push_back("<" + m.address + ">");
  } else {
    tokens.push_back(m.address);
  }
  Status s = AppendFoldedTokens(out, name, tokens);
  return s.ok() ? s : Status::Invalid(s.message(), std::string(field));
}

// A header whose value is unstructured text: as is when printable ASCII, else encoded-words.
Status AppendTextHeader(std::string& out, std::string_view name, std::string_view value,
                        std::string_view field) {
  if (!core::IsValidUtf8(value)) return Status::Invalid("not valid UTF-8", std::string(field));
  Status s;
  // "=?" in plain text could be read as the start of an encoded-word; encode such values too.
  if (IsPrintableAscii(value) && value.find("=?") == std::string_view::npos) {
    s = AppendFoldedText(out, name, value);
  } else {
    for (unsigned char c : value)
      if (c < 0x20 && c != '\t')
        return Status::Invalid("control characters are not allowed", std::string(field));
    s = AppendFoldedTokens(out, name, EncodedWords(value, kFoldAt - name.size() - 2));
  }
  return s.ok() ? s : Status::Invalid(s.message(), std::string(field));
}

Result<std::string> NormalizeMessageId(std::string_view id) {
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') id = id.substr(1, id.size() - 2);
  const size_t at = id.find('@');
  bool ok = !id.empty() && at != std::string_view::npos && at > 0 && at + 1 < id.size() &&
            id.find('@', at + 1) == std::string_view::npos && id.size() <= 900;
  for (unsigned char c : id)
    ok = ok && c > 0x20 && c < 0x7F && c != '<' && c != '>' && c != '"' && c != '\\';
  if (!ok)
    return Err(
        Status::Invalid("expected a Message-ID such as 'a1b2c3@acme.test' (printable "
                        "ASCII, one '@', no spaces or angle brackets)",
                        "message_id"));
  return "<" + std::string(id) + ">";
}

std::string EscapeHtml(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string WithPreheader(std::string_view html, std::string_view preheader) {
  const std::string block =
      "<div style=\"display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;"
      "opacity:0;overflow:hidden;mso-hide:all\">" +
      EscapeHtml(preheader) + "</div>";
  std::string lower(html);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t at = 0;
  for (size_t pos = lower.find("<body"); pos != std::string::npos;
       pos = lower.find("<body", pos + 5)) {
    const char next = pos + 5 < lower.size() ? lower[pos + 5] : '\0';
    if (next == '>' || next == ' ' || next == '\t' || next == '\r' || next == '\n') {
      const size_t close = lower.find('>', pos);
      if (close != std::string::npos) at = close + 1;
      break;
    }
  }
  std::string out(html.substr(0, at));
  out += block;
  out += html.substr(at);
  return out;
}

struct Part {
  std::string_view type;  // "text/plain"
  std::string body;       // encoded, ends in CRLF
  BodyEncoding encoding;
};

Part MakePart(std::string_view type, std::string_view utf8) {
  std::string normalized = NormalizeLineEndings(utf8);
  const BodyEncoding e = ChooseEncoding(normalized);
  return Part{type, EncodeBody(normalized, e), e};
}

void AppendPartHeaders(std::string& out, const Part& p) {
  out += "Content-Type: ";
  out += p.type;
  out += "; charset=utf-8\r\nContent-Transfer-Encoding: ";
  out += EncodingName(p.encoding);
  out += "\r\n";
}

constexpr std::array<std::string_view, 11> kBuiltInHeaders = {
    "Date",         "From",          "To",
    "Reply-To",     "Subject",       "Message-ID",
    "MIME-Version", "Content-Type",  "Content-Transfer-Encoding",
    "Sender",       "DKIM-Signature"};

}  // namespace

Result<std::string> BuildMessage(const EmailContent& c, const core::Clock& clock) {
  if (c.text.empty() && c.html.empty())
    return Err(Status::Invalid("a message needs a text or an HTML part", "text"));
  if (!core::IsValidUtf8(c.text)) return Err(Status::Invalid("not valid UTF-8", "text"));
  if (!core::IsValidUtf8(c.html)) return Err(Status::Invalid("not valid UTF-8", "html"));
  if (!core::IsValidUtf8(c.preheader)) return Err(Status::Invalid("not valid UTF-8", "preheader"));
  NUDGE_ASSIGN_OR_RETURN(const std::string message_id, NormalizeMessageId(c.message_id));

  std::string out;
  out.reserve(c.text.size() + c.html.size() * 11 / 10 + 1024);
  out += "Date: " + FormatRfc5322Date(clock.NowMillis()) + "\r\n";
  NUDGE_TRY(AppendMailboxHeader(out, "From", c.from, "from"));
  NUDGE_TRY(AppendMailboxHeader(out, "To", c.to, "to"));
  if (c.reply_to) NUDGE_TRY(AppendMailboxHeader(out, "Reply-To", *c.reply_to, "reply_to"));
  NUDGE_TRY(AppendTextHeader(out, "Subject", c.subject, "subject"));
  out += "Message-ID: " + message_id + "\r\n";
  out += "MIME-Version: 1.0\r\n";
  for (size_t i = 0; i < c.headers.size(); ++i) {
    const auto& [name, value] = c.headers[i];
    const std::string where = "headers[" + std::to_string(i) + "]";
    bool name_ok = !name.empty() && name.size() <= 76;
    for (unsigned char ch : name) name_ok = name_ok && ch > 0x20 && ch < 0x7F && ch != ':';
    if (!name_ok) return Err(Status::Invalid("'" + name + "' is not a header name", where));
    for (std::string_view builtin : kBuiltInHeaders)
      if (IEquals(name, builtin))
        return Err(Status::Invalid(name + " is written by the message builder itself", where));
    if (value.find_first_of("\r\n") != std::string::npos)
      return Err(Status::Invalid(name + ": line breaks are not allowed in a header value", where));
    NUDGE_TRY(AppendTextHeader(out, name, value, where));
  }

  std::vector<Part> parts;
  if (!c.text.empty()) parts.push_back(MakePart("text/plain", c.text));
  if (!c.html.empty())
    parts.push_back(
        MakePart("text/html", c.preheader.empty() ? c.html : WithPreheader(c.html, c.preheader)));

  if (parts.size() == 1) {
    AppendPartHeaders(out, parts[0]);
    out += "\r\n";
    out += parts[0].body;
    return out;
  }

  // A boundary derived from the Message-ID (stable bytes for a resend); "=_" cannot occur in
  // quoted-printable or base64 output, and a 7bit part is checked.
  std::string boundary = "=_nudge_" + core::Sha256Hex(message_id).substr(0, 24);
  for (int salt = 0;; ++salt) {
    bool clash = false;
    for (const Part& p : parts) clash = clash || p.body.find(boundary) != std::string::npos;
    if (!clash) break;
    boundary = "=_nudge_" + core::Sha256Hex(message_id + std::to_string(salt)).substr(0, 40);
  }
  out += "Content-Type: multipart/alternative;\r\n boundary=\"" + boundary + "\"\r\n\r\n";
  for (const Part& p : parts) {
    out += "--" + boundary + "\r\n";
    AppendPartHeaders(out, p);
    out += "\r\n";
    out += p.body;
  }
  out += "--" + boundary + "--\r\n";
  return out;
}

}  // namespace nudge::channel
