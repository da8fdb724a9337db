// SMTP replies (RFC 5321 §4.2) and the capabilities a server lists in its EHLO reply.
//
// SmtpReplyReader collects bytes from the wire and hands out complete replies: multi-line
// ones ("250-..." continued by "250 ...") become one SmtpReply. Enhanced status codes
// (RFC 3463, "5.1.1") are split off the text when present. Malformed input (a line that does
// not start with three digits, a continuation with another code, an over-long line or reply)
// is an error, never a crash: the bytes come from outside.
//
// Value types and a single-threaded reader; no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace nudge::channel {

struct SmtpReply {
  int code = 0;          // 220, 250, 354, 421, 550, ...
  std::string enhanced;  // "2.0.0", empty when the server did not send one
  // The text of each line without the code, the separator and the enhanced code.
  std::vector<std::string> lines;

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // The lines joined with a space: "Ok: queued as 4BF2A1C0E".
  std::string Text() const;
  // "250 2.0.0 Ok: queued as 4BF2A1C0E", for logs and errors.
  std::string ToString() const;
};

class SmtpReplyReader {
 public:
  // RFC 5321 allows 512 octets per reply line; be lenient but bounded.
  static constexpr size_t kMaxLine = 4096;
  static constexpr size_t kMaxLines = 200;

  // Appends bytes read from the connection.
  void Feed(std::string_view bytes) { buffer_.append(bytes); }

  // The next complete reply; nullopt when more bytes are needed; an error (kInvalidArgument)
  // when the input is not SMTP. After an error the reader should be discarded.
  Result<std::optional<SmtpReply>> Next();

  // Bytes received but not yet part of a returned reply.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  size_t consumed_ = 0;
};

// Parses a complete reply from text (one or more CRLF-terminated lines); for tests and tools.
Result<SmtpReply> ParseSmtpReply(std::string_view text);

// What an EHLO reply advertises.
struct EhloCapabilities {
  bool esmtp = false;  // EHLO was accepted (else HELO was used and nothing is known)
  bool pipelining = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  std::optional<uint64_t> size;   // SIZE limit; 0 or absent means no stated limit
  std::vector<std::string> auth;  // mechanisms, uppercase: "PLAIN", "LOGIN", ...
  bool HasAuth(std::string_view mechanism) const;
};

// Reads the keywords from the lines of a 250 EHLO reply (the first line is the greeting).
EhloCapabilities ParseEhlo(const SmtpReply& reply);

}  // namespace nudge::channel
