// libFuzzer target: the bounce and complaint parsers (MIME, DSN, ARF, plain-text bounces) and
// the SES/SNS, SendGrid and Postmark webhook parsers over arbitrary bytes. Besides the
// sanitizers' findings it checks what the callers rely on: a parsed report has at least one
// Feedback; every Feedback has a known source and clean fields (valid UTF-8, no control
// characters); a recipient is lowercased with one '@'; a status looks like "5.1.1".
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channel/feedback/feedback.h"
#include "channel/feedback/mime.h"
#include "channel/feedback/report.h"
#include "channel/feedback/webhooks.h"
#include "core/json.h"

namespace {

using nudge::channel::Feedback;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckClean(const std::string& s) {
  Check(nudge::core::IsValidUtf8(s));
  for (char c : s) Check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7F);
}

void CheckStatus(const std::string& s) {
  if (s.empty()) return;
  Check(s.size() >= 5 && s.size() <= 9);
  Check(s[0] == '2' || s[0] == '4' || s[0] == '5');
  Check(s[1] == '.' && s[2] >= '0' && s[2] <= '7' && s[3] == '.');
  for (size_t i = 4; i < s.size(); ++i) Check(s[i] >= '0' && s[i] <= '9');
}

void CheckFeedback(const std::vector<Feedback>& all, bool from_mail) {
  for (const Feedback& f : all) {
    for (const std::string* s : {&f.recipient, &f.message_id, &f.status, &f.diagnostic, &f.source,
                                 &f.provider_id, &f.subtype, &f.envelope_id, &f.remote_mta}) {
      CheckClean(*s);
    }
    for (const auto& [key, value] : f.metadata) {
      CheckClean(key);
      CheckClean(value);
    }
    Check(f.message_id.find(' ') == std::string::npos);
    CheckStatus(f.status);
    if (!f.recipient.empty()) {
      Check(f.recipient.find('@') == f.recipient.rfind('@') &&
            f.recipient.find('@') != std::string::npos);
      for (char c : f.recipient) Check(!(c >= 'A' && c <= 'Z'));
    } else {
      Check(f.kind == Feedback::Kind::kComplaint || f.kind == Feedback::Kind::kUnknown);
    }
    if (from_mail) {
      Check(f.source == "dsn" || f.source == "arf" || f.source == "jmrp" || f.source == "text");
    } else {
      Check(f.source == "ses" || f.source == "sendgrid" || f.source == "postmark");
      Check(!f.recipient.empty());
    }
    Check(!nudge::channel::FeedbackKindName(f.kind).empty());
  }
}

void CheckWebhook(const nudge::core::Result<nudge::channel::WebhookResult>& r) {
  if (!r) {
    Check(!r.error().ok() && !r.error().message().empty());
    return;
  }
  CheckFeedback(r->feedback, false);
}

uint32_t Hash(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Small limits sometimes (chosen by the input's hash, so seeds stay plain files), so that
  // the limit paths run on inputs the fuzzer can reach.
  const uint32_t h = Hash(input);
  nudge::channel::ReportLimits limits;
  if (h & 1) {
    limits.max_recipients = 1 + (h >> 1) % 4;
    limits.mime.max_depth = 1 + (h >> 3) % 4;
    limits.mime.max_parts = 1 + (h >> 5) % 8;
    limits.mime.max_fields = 1 + (h >> 8) % 16;
  }
  auto report = nudge::channel::ParseReport(input, limits);
  if (report) {
    Check(!report->empty() && report->size() <= limits.max_recipients);
    CheckFeedback(*report, true);
  } else {
    Check(!report.error().message().empty());
  }
  (void)nudge::channel::ParseMimeTree(input, limits.mime);
  CheckStatus(nudge::channel::ExtractStatusCode(input));
  CheckClean(nudge::channel::NormalizeRecipient(input));
  CheckClean(nudge::channel::NormalizeMessageId(input));
  (void)nudge::channel::DecodeHeaderWords(input);

  nudge::channel::WebhookLimits webhook_limits;
  if (h & 2) {
    webhook_limits.max_json_depth = 1 + (h >> 2) % 8;
    webhook_limits.max_json_values = 1 + (h >> 5) % 64;
    webhook_limits.max_events = 1 + (h >> 11) % 4;
  }
  CheckWebhook(nudge::channel::ParseSesWebhook(input, webhook_limits));
  CheckWebhook(nudge::channel::ParseSendGridWebhook(input, webhook_limits));
  CheckWebhook(nudge::channel::ParsePostmarkWebhook(input, webhook_limits));
  return 0;
}
