// Building an email message (RFC 5322 + MIME) from the parts of a rendered email.
//
// BuildMessage turns an EmailContent into the exact bytes handed to the relay: CRLF line
// endings, no line longer than 998 octets, UTF-8 display names and subjects as RFC 2047
// encoded-words, long headers folded, bodies in 7bit, quoted-printable or base64 (whichever is
// smallest and safe), and multipart/alternative when there is both a text and an HTML part
// (text first, as RFC 2046 wants the richest part last). Dot-stuffing is not done here: it is
// part of the SMTP transfer (SmtpClient does it).
//
// The same content and Message-ID always give the same bytes apart from the Date header (the
// MIME boundary is derived from the Message-ID), so a resend after a crash is the same message.
//
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::channel {

// A mailbox: an optional display name (UTF-8) and an address (ASCII local@domain).
struct Mailbox {
  std::string name;
  std::string address;
};

// Parses "Acme <hello@acme.test>", "\"Acme, Inc.\" <hello@acme.test>" or "hello@acme.test".
// Errors (kInvalidArgument) say what is wrong: no address, no '@', non-ASCII address (needs
// SMTPUTF8, not supported), control characters.
Result<Mailbox> ParseMailbox(std::string_view text);

// Checks an envelope or header address: ASCII, one '@' with text on both sides, no spaces,
// angle brackets or control characters.
Status CheckAddress(std::string_view address);

// The recipient domain of an address, lowercased ("User@Example.COM" -> "example.com").
std::string AddressDomain(std::string_view address);

// A rendered email, ready to be serialized.
struct EmailContent {
  Mailbox from;
  Mailbox to;
  std::optional<Mailbox> reply_to;
  std::string subject;  // UTF-8; may be empty
  // Hidden preview text shown by mail clients after the subject; inserted at the start of the
  // HTML body (after <body ...>) in an invisible block. Ignored when there is no HTML part.
  std::string preheader;
  std::string text;  // UTF-8 plain-text part; empty means none
  std::string html;  // UTF-8 HTML part; empty means none. At least one of text/html is needed.
  // Extra header fields in order, e.g. {"List-Unsubscribe", "<https://...>, <mailto:...>"},
  // {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"}, {"Feedback-ID", "..."}.
  // Names must be printable ASCII without ':'; values must not contain CR or LF (no header
  // injection) and are RFC 2047-encoded when not ASCII. The fields BuildMessage writes itself
  // (Date, From, To, Reply-To, Subject, Message-ID, MIME-Version, Content-*) are refused here.
  std::vector<std::pair<std::string, std::string>> headers;
  // Stable id chosen by the caller, "local@domain" with or without angle brackets. The same
  // message sent twice (a retry, a resend after a crash) must carry the same id.
  std::string message_id;
};

// Serializes content to RFC 5322 bytes. Date is taken from clock. Errors (kInvalidArgument,
// `where` naming the field): bad addresses or Message-ID, invalid UTF-8, no body part, a
// forbidden or malformed extra header, a header that cannot be folded under 998 octets.
Result<std::string> BuildMessage(const EmailContent& content, const core::Clock& clock);

// "Tue, 02 Jan 2024 15:04:05 +0000" (RFC 5322 §3.3), UTC.
std::string FormatRfc5322Date(core::Millis ms);

}  // namespace nudge::channel
