// Bounce, complaint and delivery notifications that email service providers POST to a webhook,
// parsed from the request body into Feedback (source "ses", "sendgrid", "postmark").
//
//   Amazon SES through SNS: the SNS envelope (Type Notification, SubscriptionConfirmation,
//     UnsubscribeConfirmation) whose Message is the SES notification as a JSON string; also the
//     bare SES notification (SNS "raw message delivery"). notificationType (or eventType, for
//     configuration-set event publishing) Bounce: bounceType Permanent -> hard, Transient and
//     Undetermined -> soft, one Feedback per bouncedRecipients[]; Complaint -> one complaint
//     per complainedRecipients[]; Delivery -> delivered; DeliveryDelay -> soft. The Message-ID
//     comes from mail.headers (else mail.commonHeaders.messageId), provider_id is
//     mail.messageId, metadata the message tags.
//   SendGrid Event Webhook: an array of events. bounce (type bounce -> hard, or soft when its
//     status is 4.X.X; type blocked or expired -> soft), dropped (reason "Bounced Address" ->
//     hard, "Spam Reporting Address" -> complaint, other reasons -> kUnknown), spamreport ->
//     complaint, deferred -> soft, delivered. message_id from smtp-id, provider_id from
//     sg_message_id, metadata the custom arguments (top-level fields SendGrid does not define).
//   Postmark: RecordType Bounce (Type HardBounce, BadEmailAddress -> hard; SoftBounce,
//     Transient, DnsError, SpamNotification, VirusNotification, Blocked, ... -> soft; others
//     such as AutoResponder or ManuallyDeactivated -> kUnknown), SpamComplaint -> complaint,
//     Delivery -> delivered. provider_id is MessageID; the Message-ID comes from Headers when
//     present, else from the bounce itself in Content (parsed with ParseReport); metadata is
//     Metadata plus Tag.
// Other event types (opens, clicks, processed, sends) are counted in `ignored_events`, as are
// events without a usable recipient address.
//
// SNS signatures are NOT verified: that needs the signing certificate from SigningCertURL, and
// this library does no network I/O. The envelope's signature fields are returned, with
// SnsStringToSign() and IsAmazonSnsUrl() for a caller that fetches the certificate (and that
// must check a SubscribeURL the same way before fetching it). SendGrid's signed webhook
// (ECDSA) and Postmark's basic auth are likewise left to the HTTP layer.
//
// Untrusted input: never crashes; bodies, JSON nesting and value counts are bounded
// (WebhookLimits). Thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channel/feedback/feedback.h"
#include "core/result.h"

namespace nudge::channel {

struct WebhookLimits {
  size_t max_body_bytes = 8 << 20;
  size_t max_json_values = 500000;  // JSON values in the body (each array/object/scalar)
  size_t max_json_depth = 64;
  size_t max_events = 10000;  // SendGrid events per body
};

// The SNS message envelope, as sent
// (https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html).
struct SnsEnvelope {
  std::string type;  // "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"
  std::string message_id;
  std::string topic_arn;
  std::string subject;  // Notification only, optional
  std::string message;
  std::string timestamp;
  std::string token;          // confirmations only
  std::string subscribe_url;  // confirmations only
  std::string unsubscribe_url;
  std::string signature_version;  // "1" (SHA1withRSA) or "2" (SHA256withRSA)
  std::string signature;          // base64
  std::string signing_cert_url;
};

struct WebhookResult {
  std::vector<Feedback> feedback;
  std::optional<SnsEnvelope> sns;  // SES through SNS: the envelope, signature unverified
  // SubscriptionConfirmation: the URL to GET to confirm the subscription. Check it with
  // IsAmazonSnsUrl() before fetching it: the body is untrusted until verified.
  std::string subscribe_url;
  size_t ignored_events = 0;
};

// Errors: kTooLarge (body or JSON past the limits); kInvalidArgument when the body is not JSON
// or not of the provider's shape, with `where` naming the field ("Message", "[3].email").
Result<WebhookResult> ParseSesWebhook(std::string_view body, const WebhookLimits& limits = {});
Result<WebhookResult> ParseSendGridWebhook(std::string_view body, const WebhookLimits& limits = {});
Result<WebhookResult> ParsePostmarkWebhook(std::string_view body, const WebhookLimits& limits = {});

// The canonical text SNS signs for this envelope (its Signature is over these bytes with the
// certificate's key: SHA1 for SignatureVersion 1, SHA256 for 2).
std::string SnsStringToSign(const SnsEnvelope& envelope);

// True for "https://sns.<region>.amazonaws.com/..." (or amazonaws.com.cn): the only hosts
// a SigningCertURL or SubscribeURL may point at. No user info, no port.
bool IsAmazonSnsUrl(std::string_view url);

}  // namespace nudge::channel
