// Feedback: what a receiving mail system or an email service provider told us about a message
// we sent (a hard or soft bounce, a complaint, a delivery), normalized from every format this
// folder reads:
//   report.h      DSN (RFC 3464), ARF (RFC 5965) and plain-text bounces, as email messages;
//   webhooks.h    Amazon SES (through SNS), SendGrid and Postmark webhook bodies;
//   maildir.h     a maildir of such messages;  smtp_listener.h  an SMTP server receiving them.
// The parsers decide only what the remote side said; what nudge does about it (suppression,
// counting, events) belongs to the caller. `Suppresses()` states the rule DESIGN.md asks for.
//
// Every string field is valid UTF-8 with no control characters, whatever arrived, so it can
// go into JSON and the store as is. Plain values; thread-compatible. Functions: thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nudge::channel {

struct Feedback {
  enum class Kind {
    kHardBounce,  // permanent failure for this address (suppress it)
    kSoftBounce,  // temporary failure, delay, full mailbox (count it)
    kComplaint,   // the recipient reported the message as spam (suppress it)
    kDelivered,   // accepted by the recipient's system (a success DSN or a provider event)
    kUnknown,     // a report we understood but that says neither (e.g. a dropped event)
  };
  Kind kind = Kind::kUnknown;
  // Lowercased address of the recipient. Empty only for a complaint whose report redacted it
  // (the caller then finds the contact through message_id).
  std::string recipient;
  // The Message-ID header of the message we sent, without <>, when the report carries it.
  std::string message_id;
  std::string status;      // enhanced status code ("5.1.1"), when known
  std::string diagnostic;  // the remote server's text (Diagnostic-Code, SMTP reply, reason)
  // Where it came from: "dsn" (RFC 3464), "arf" (RFC 5965), "jmrp" (Microsoft's complaint
  // format), "text" (a non-standard bounce recognised by its wording), "ses", "sendgrid",
  // "postmark".
  std::string source;
  std::string provider_id;  // the provider's own id for the message (SES, SendGrid, Postmark)
  // The Message-ID of the report itself (a bounce or complaint mail), without <>: two reports
  // about the same address are two reports, one read twice is one.
  std::string report_id;
  // The finer kind as the source names it: DSN Action ("failed", "delayed"), ARF Feedback-Type
  // ("abuse"), SES bounceType/bounceSubType ("Permanent/General") or complaintFeedbackType,
  // SendGrid event or bounce type ("bounce", "blocked", "dropped"), Postmark Type.
  std::string subtype;
  std::string envelope_id;  // DSN Original-Envelope-Id (the ENVID given at sending), if any
  std::string remote_mta;   // DSN Remote-MTA (host) or SES remoteMtaIp, if any
  // Data the sender attached and the provider echoes back: Postmark Metadata and Tag,
  // SendGrid custom arguments, SES message tags. In the order received.
  std::vector<std::pair<std::string, std::string>> metadata;
};

// "hard_bounce", "soft_bounce", "complaint", "delivered", "unknown": stable names.
std::string_view FeedbackKindName(Feedback::Kind kind);

// True for a hard bounce or a complaint: the address must not be mailed again.
inline bool Suppresses(const Feedback& f) {
  return f.kind == Feedback::Kind::kHardBounce || f.kind == Feedback::Kind::kComplaint;
}

// The address in `text` ("User@Example.COM", "<user@example.com>", "Name <user@example.com>")
// lowercased, or "" when it does not look like one address (no '@', spaces, control characters,
// invalid UTF-8, longer than 254 bytes).
std::string NormalizeRecipient(std::string_view text);

// The first msg-id in a Message-ID header value, without <> and white space, or "" when there
// is none (longer than 998 bytes, control characters or invalid UTF-8 count as none).
std::string NormalizeMessageId(std::string_view value);

// The first enhanced status code (RFC 3463, "5.1.1", class 2, 4 or 5, subject 0-7) in free
// text; failing that, a basic SMTP reply code where one stands ("550 ...", "said: 452 ...")
// turned into "5.0.0" / "4.0.0"; else "". IP addresses and version numbers are not codes.
std::string ExtractStatusCode(std::string_view text);

// The kind a status code alone implies: class 5 is a hard bounce except X.2.2 (mailbox full,
// which RFC 3463 calls persistent-transient and providers count as soft), class 4 soft,
// class 2 delivered, anything else unknown.
Feedback::Kind KindForStatus(std::string_view status);

}  // namespace nudge::channel
