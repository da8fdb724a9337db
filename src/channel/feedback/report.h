// Reading the email that comes back to the bounce and feedback addresses: delivery status
// notifications, feedback reports and the bounces that follow neither standard.
//
// ParseReport recognises, in this order:
//   1. ARF (RFC 5965): a multipart/report with a message/feedback-report part. Each
//      Original-Rcpt-To is a complaint (Feedback-Type abuse, fraud, virus, other, opt-out;
//      not-spam and auth-failure reports are kUnknown). When the report redacts the recipient,
//      the To of the returned message is used, else one complaint with an empty recipient.
//   1b. Microsoft JMRP: a returned message carrying X-HmXmrOriginalRecipient, a complaint
//      (source "jmrp").
//   2. DSN (RFC 3464/3462/6533): a message/delivery-status (or message/global-delivery-status)
//      part, normally in a multipart/report; one Feedback per recipient block (Final-Recipient,
//      else Original-Recipient). Action failed with a 5.X.X status is a hard bounce, a 4.X.X
//      status or Action delayed a soft one, delivered/relayed/expanded is kDelivered; a 5.2.2
//      (mailbox full) is soft. A generic X.0.0 Status is refined by a more precise code of the
//      same class in Diagnostic-Code (Exim writes "Status: 5.0.0"). Postfix, Exim, Gmail,
//      Outlook/Exchange and most MTAs send these.
//   3. Plain-text bounces (source "text"), for mail whose From, Subject or X-Failed-Recipients
//      says it is a bounce: qmail's "<address>:" paragraphs, Exim's and sendmail's indented
//      address lists after "The following address(es) failed", X-Failed-Recipients, and as a
//      last resort addresses on lines that carry an SMTP status (or, when the returned headers
//      are there, the returned message's To/Cc addresses named in the notice). The status
//      is the first code near the address, else the notice's when it names one recipient;
//      failing any code, wording
//      decides ("permanent error", "retry timeout exceeded", "user unknown" → hard; "delayed",
//      "not yet been delivered", "mailbox full" → soft; a bare "could not be delivered" → soft,
//      as suppressing on a guess could silence a valid address).
// In every case the returned message (message/rfc822, text/rfc822-headers, or the text after
// "------ This is a copy of the message" and similar markers) gives the original Message-ID;
// a DSN's X-Original-Message-ID (Gmail) is the fallback. Lines may end in CRLF, LF or a lone
// CR.
//
// Untrusted input: never crashes, bounded time and memory (see ReportLimits). Thread-safe.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "channel/feedback/feedback.h"
#include "channel/feedback/mime.h"
#include "core/result.h"

namespace nudge::channel {

struct ReportLimits {
  size_t max_message_bytes = 10 << 20;
  size_t max_recipients = 1000;  // Feedback entries per message; the rest are dropped
  MimeParseLimits mime;
};

// Parses one whole message (headers and body, as received). Returns at least one Feedback.
// Errors: kTooLarge when the message is over max_message_bytes; kInvalidArgument when it is not
// a bounce or a complaint (an auto-reply, a person's mail, garbage) or names no recipient,
// with a message saying which.
Result<std::vector<Feedback>> ParseReport(std::string_view message,
                                          const ReportLimits& limits = {});

}  // namespace nudge::channel
