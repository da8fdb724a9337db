#include "channel/email/smtp_reply.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

namespace nudge::channel {

namespace {

// "5.1.1 " at the start of a line whose reply class is c (RFC 3463: class.subject.detail).
size_t EnhancedCodeLength(std::string_view text, char reply_class) {
  if (text.size() < 5 || text[0] != reply_class || text[1] != '.') return 0;
  size_t i = 2, digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && digits < 3) {
    ++i;
    ++digits;
  }
  if (digits == 0 || i >= text.size() || text[i] != '.') return 0;
  ++i;
  digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && digits < 3) {
    ++i;
    ++digits;
  }
  if (digits == 0) return 0;
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string SmtpReply::Text() const {
  std::string out;
  for (const std::string& line : lines) {
    if (!out.empty() && !line.empty()) out += ' ';
    out += line;
  }
  return out;
}

std::string SmtpReply::ToString() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  const std::string text = Text();
  if (!text.empty()) out += " " + text;
  return out;
}

Result<std::optional<SmtpReply>> SmtpReplyReader::Next() {
  SmtpReply reply;
  size_t pos = consumed_;
  while (true) {
    const size_t eol = buffer_.find('\n', pos);
    if (eol == std::string::npos) {
      if (buffer_.size() - pos > kMaxLine)
        return Err(Status::Invalid("the server sent a reply line longer than " +
                                   std::to_string(kMaxLine) + " bytes"));
      return std::optional<SmtpReply>();
    }
    std::string_view line(buffer_.data() + pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxLine)
      return Err(Status::Invalid("the server sent a reply line longer than " +
                                 std::to_string(kMaxLine) + " bytes"));
    int code = 0;
    const bool digits = line.size() >= 3 && std::all_of(line.begin(), line.begin() + 3, [](char c) {
                          return std::isdigit(static_cast<unsigned char>(c));
                        });
    if (digits) std::from_chars(line.data(), line.data() + 3, code);
    if (!digits || code < 200 || code > 599 ||
        (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
      return Err(Status::Invalid("the server sent something that is not an SMTP reply: '" +
                                 std::string(line.substr(0, 80)) + "'"));
    if (reply.code != 0 && code != reply.code)
      return Err(Status::Invalid("a multi-line reply changed its code from " +
                                 std::to_string(reply.code) + " to " + std::to_string(code)));
    reply.code = code;
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
    const size_t enh = EnhancedCodeLength(text, line[0]);
    if (enh > 0) {
      if (reply.enhanced.empty()) reply.enhanced = std::string(text.substr(0, enh));
      text.remove_prefix(std::min(text.size(), enh + 1));
    }
    reply.lines.emplace_back(text);
    if (reply.lines.size() > kMaxLines)
      return Err(Status::Invalid("the server sent a reply of more than " +
                                 std::to_string(kMaxLines) + " lines"));
    pos = eol + 1;
    if (line.size() == 3 || line[3] == ' ') break;
  }
  consumed_ = pos;
  // Compact once the consumed prefix dominates, so the buffer does not grow without bound.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 4096 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<SmtpReply>(std::move(reply));
}

Result<SmtpReply> ParseSmtpReply(std::string_view text) {
  SmtpReplyReader reader;
  reader.Feed(text);
  NUDGE_ASSIGN_OR_RETURN(std::optional<SmtpReply> reply, reader.Next());
  if (!reply) return Err(Status::Invalid("the reply is incomplete (no final line)"));
  if (reader.buffered() != 0) return Err(Status::Invalid("text after the reply's final line"));
  return std::move(*reply);
}

bool EhloCapabilities::HasAuth(std::string_view mechanism) const {
  return std::find(auth.begin(), auth.end(), Upper(mechanism)) != auth.end();
}

EhloCapabilities ParseEhlo(const SmtpReply& reply) {
  EhloCapabilities caps;
  caps.esmtp = reply.code == 250;
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::istringstream words(reply.lines[i]);
    std::string keyword;
    words >> keyword;
    keyword = Upper(keyword);
    std::vector<std::string> params;
    for (std::string w; words >> w;) params.push_back(Upper(w));
    // Old servers write "AUTH=PLAIN LOGIN".
    if (keyword.rfind("AUTH=", 0) == 0) {
      params.insert(params.begin(), keyword.substr(5));
      keyword = "AUTH";
    }
    if (keyword == "PIPELINING") {
      caps.pipelining = true;
    } else if (keyword == "STARTTLS") {
      caps.starttls = true;
    } else if (keyword == "ENHANCEDSTATUSCODES") {
      caps.enhanced_status_codes = true;
    } else if (keyword == "8BITMIME") {
      caps.eight_bit_mime = true;
    } else if (keyword == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (keyword == "SIZE") {
      uint64_t n = 0;
      if (!params.empty()) {
        auto [end, ec] = std::from_chars(params[0].data(), params[0].data() + params[0].size(), n);
        if (ec == std::errc() && end == params[0].data() + params[0].size()) caps.size = n;
      } else {
        caps.size = 0;
      }
    } else if (keyword == "AUTH") {
      for (std::string& p : params)
        if (std::find(caps.auth.begin(), caps.auth.end(), p) == caps.auth.end())
          caps.auth.push_back(std::move(p));
    }
  }
  return caps;
}

}  // namespace nudge::channel
