// FeedbackProcessor: what nudge does with bounces and complaints, whichever way they arrived
// (a DSN or ARF report by the inbound SMTP listener or from a maildir, an SES, SendGrid or
// Postmark webhook). The message is found by its Message-ID (or the provider's echo of nudge's
// message id), else the contact by the recipient's address; then:
//   hard bounce  → the address is suppressed (hard_bounce), the message marked bounced,
//                  "Email Bounced" {bounce_type: hard}
//   soft bounce  → counted; "Email Bounced" {bounce_type: soft}; the fifth soft bounce of a
//                  contact suppresses the address too
//   complaint    → suppressed (complaint), unsubscribed from email, "Email Marked as Spam"
//   delivered    → "Email Delivered"
// Reapplying the same report changes nothing more (events are keyed by report).
// Thread-safe.
#pragma once

#include <optional>
#include <string>

#include "channel/feedback/feedback.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "segment/engine.h"
#include "store/store.h"

namespace nudge::channel {

struct FeedbackOutcome {
  bool matched = false;     // a message or contact was found
  bool suppressed = false;  // the address went on the suppression list
  std::string detail;       // what was done, for logs and the webhook's answer
};

class FeedbackProcessor {
 public:
  FeedbackProcessor(store::Store& store, segment::Engine& segments, const core::Clock& clock,
                    core::MetricsRegistry* metrics);

  // ws: the workspace the report came in for (a webhook URL names one); nullopt: find it from
  // the message, else look for the address in every workspace.
  Result<FeedbackOutcome> Apply(const Feedback& feedback,
                                std::optional<store::WorkspaceId> ws = std::nullopt);

  static constexpr int64_t kSoftBouncesToSuppress = 5;

 private:
  store::Store& store_;
  segment::Engine& segments_;
  const core::Clock& clock_;
  core::Counter* reports_ = nullptr;
};

}  // namespace nudge::channel
