#include "channel/feedback/webhooks.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "channel/feedback/internal/text.h"
#include "channel/feedback/report.h"

namespace nudge::channel {

using feedback_internal::CleanText;
using feedback_internal::DropFieldType;
using feedback_internal::IStartsWith;
using feedback_internal::MtaName;
using feedback_internal::StatusToken;
using feedback_internal::ToLower;

namespace {

// ordered_json keeps objects' keys in the order received (metadata is reported that way).
using Json = nlohmann::ordered_json;

constexpr size_t kMaxDiagnostic = 1000;
constexpr size_t kMaxShortField = 256;
constexpr size_t kMaxMetadata = 32;

// Counts values and nesting before a document is built, so that a hostile body cannot make
// the parser allocate far more than the body's size.
class LimitSax final : public nlohmann::json_sax<Json> {
 public:
  explicit LimitSax(const WebhookLimits& limits) : limits_(limits) {}

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override { return Open(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t) override { return Open(); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    error_ = Status::Invalid(std::string("not valid JSON: ") + ex.what());
    return false;
  }

  const Status& error() const { return error_; }

 private:
  bool Value() {
    if (++values_ > limits_.max_json_values) {
      error_ = Status(Code::kTooLarge,
                      "more than " + std::to_string(limits_.max_json_values) + " JSON values");
      return false;
    }
    return true;
  }
  bool Open() {
    if (++depth_ > limits_.max_json_depth) {
      error_ = Status(Code::kTooLarge, "JSON nested deeper than " +
                                           std::to_string(limits_.max_json_depth) + " levels");
      return false;
    }
    return Value();
  }
  bool Close() {
    --depth_;
    return true;
  }

  const WebhookLimits& limits_;
  size_t values_ = 0;
  size_t depth_ = 0;
  Status error_;
};

Result<Json> ParseJson(std::string_view text, const WebhookLimits& limits) {
  if (text.size() > limits.max_body_bytes) {
    return Err(Status(Code::kTooLarge, "body of " + std::to_string(text.size()) +
                                           " bytes is over the limit of " +
                                           std::to_string(limits.max_body_bytes)));
  }
  try {
    LimitSax sax(limits);
    if (!Json::sax_parse(text.begin(), text.end(), &sax)) {
      if (!sax.error().ok()) return Err(sax.error());
      return Err(Status::Invalid("not valid JSON"));
    }
    Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return Err(Status::Invalid("not valid JSON"));
    return doc;
  } catch (const std::exception& e) {
    return Err(Status::Invalid(std::string("not valid JSON: ") + e.what()));
  }
}

const Json* Get(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// A scalar as text (strings as they are, numbers and booleans written out), else "".
std::string Str(const Json* value) {
  if (value == nullptr) return "";
  if (value->is_string()) return value->get_ref<const std::string&>();
  if (value->is_number_integer() || value->is_number_unsigned() || value->is_number_float() ||
      value->is_boolean()) {
    return value->dump();
  }
  return "";
}

std::string Str(const Json& object, const char* key) { return Str(Get(object, key)); }

std::string Clean(std::string_view text, size_t max = kMaxShortField) {
  return CleanText(text, max);
}

// The status a provider gave, else one found in its text.
std::string StatusOf(std::string_view status, std::string_view text) {
  std::string code = StatusToken(status);
  if (code.empty()) code = ExtractStatusCode(text);
  return code;
}

void AddMetadata(Feedback& f, std::string_view key, std::string_view value) {
  if (f.metadata.size() >= kMaxMetadata) return;
  f.metadata.emplace_back(Clean(key, 128), Clean(value, 1024));
}

// ---------------------------------------------------------------------------------------------
// Amazon SES

// The Message-ID of the message we sent, from SES's copy of its headers.
std::string SesMessageId(const Json* mail) {
  if (mail == nullptr) return "";
  if (const Json* headers = Get(*mail, "headers"); headers != nullptr && headers->is_array()) {
    for (const Json& h : *headers) {
      if (feedback_internal::IEquals(Str(h, "name"), "Message-ID")) {
        std::string id = NormalizeMessageId(Str(h, "value"));
        if (!id.empty()) return id;
      }
    }
  }
  if (const Json* common = Get(*mail, "commonHeaders")) {
    return NormalizeMessageId(Str(*common, "messageId"));
  }
  return "";
}

Status AddSesNotification(const Json& msg, const WebhookLimits& limits, WebhookResult& out) {
  if (!msg.is_object()) return Status::Invalid("an SES notification is a JSON object");
  std::string type = Str(msg, "notificationType");
  if (type.empty()) type = Str(msg, "eventType");
  const Json* mail = Get(msg, "mail");

  Feedback base;
  base.source = "ses";
  if (mail != nullptr) {
    base.provider_id = Clean(Str(*mail, "messageId"));
    base.message_id = SesMessageId(mail);
    if (const Json* tags = Get(*mail, "tags"); tags != nullptr && tags->is_object()) {
      for (const auto& [key, values] : tags->items()) {
        std::string joined;
        if (values.is_array()) {
          for (const Json& v : values) {
            if (!joined.empty()) joined += ',';
            joined += Str(&v);
          }
        } else {
          joined = Str(&values);
        }
        AddMetadata(base, key, joined);
      }
    }
  }

  auto recipients = [&](const Json* section, const char* list) -> const Json* {
    if (section == nullptr) return nullptr;
    const Json* r = Get(*section, list);
    return r != nullptr && r->is_array() ? r : nullptr;
  };

  if (type == "Bounce") {
    const Json* bounce = Get(msg, "bounce");
    const Json* list = recipients(bounce, "bouncedRecipients");
    if (list == nullptr) return Status::Invalid("a Bounce without bouncedRecipients", "bounce");
    const std::string bounce_type = Str(*bounce, "bounceType");
    const std::string sub_type = Str(*bounce, "bounceSubType");
    for (const Json& r : *list) {
      Feedback f = base;
      f.recipient = NormalizeRecipient(r.is_object() ? Str(r, "emailAddress") : "");
      if (f.recipient.empty() || out.feedback.size() >= limits.max_events) {
        ++out.ignored_events;
        continue;
      }
      const std::string diagnostic(DropFieldType(Str(r, "diagnosticCode")));
      f.diagnostic = Clean(diagnostic, kMaxDiagnostic);
      f.status = StatusOf(Str(r, "status"), diagnostic);
      f.kind =
          bounce_type == "Permanent" ? Feedback::Kind::kHardBounce : Feedback::Kind::kSoftBounce;
      f.subtype = Clean(sub_type.empty() ? bounce_type : bounce_type + "/" + sub_type);
      f.remote_mta = MtaName(Str(*bounce, "remoteMtaIp"));
      out.feedback.push_back(std::move(f));
    }
    return Status::Ok();
  }
  if (type == "Complaint") {
    const Json* complaint = Get(msg, "complaint");
    const Json* list = recipients(complaint, "complainedRecipients");
    if (list == nullptr) {
      return Status::Invalid("a Complaint without complainedRecipients", "complaint");
    }
    const std::string feedback_type = ToLower(Str(*complaint, "complaintFeedbackType"));
    for (const Json& r : *list) {
      Feedback f = base;
      f.recipient = NormalizeRecipient(r.is_object() ? Str(r, "emailAddress") : "");
      if (f.recipient.empty() || out.feedback.size() >= limits.max_events) {
        ++out.ignored_events;
        continue;
      }
      f.kind = feedback_type == "not-spam" ? Feedback::Kind::kUnknown : Feedback::Kind::kComplaint;
      f.subtype = Clean(feedback_type);
      f.diagnostic = Clean(Str(*complaint, "userAgent"));
      out.feedback.push_back(std::move(f));
    }
    return Status::Ok();
  }
  if (type == "Delivery") {
    const Json* delivery = Get(msg, "delivery");
    const Json* list = recipients(delivery, "recipients");
    if (list == nullptr) return Status::Invalid("a Delivery without recipients", "delivery");
    const std::string response = Str(*delivery, "smtpResponse");
    for (const Json& r : *list) {
      Feedback f = base;
      f.recipient = NormalizeRecipient(Str(&r));
      if (f.recipient.empty() || out.feedback.size() >= limits.max_events) {
        ++out.ignored_events;
        continue;
      }
      f.kind = Feedback::Kind::kDelivered;
      f.subtype = "Delivery";
      f.diagnostic = Clean(response, kMaxDiagnostic);
      f.status = ExtractStatusCode(response);
      f.remote_mta = MtaName(Str(*delivery, "remoteMtaIp"));
      out.feedback.push_back(std::move(f));
    }
    return Status::Ok();
  }
  if (type == "DeliveryDelay") {
    const Json* delay = Get(msg, "deliveryDelay");
    const Json* list = recipients(delay, "delayedRecipients");
    if (list == nullptr) {
      return Status::Invalid("a DeliveryDelay without delayedRecipients", "deliveryDelay");
    }
    for (const Json& r : *list) {
      Feedback f = base;
      f.recipient = NormalizeRecipient(r.is_object() ? Str(r, "emailAddress") : "");
      if (f.recipient.empty() || out.feedback.size() >= limits.max_events) {
        ++out.ignored_events;
        continue;
      }
      const std::string diagnostic(DropFieldType(Str(r, "diagnosticCode")));
      f.kind = Feedback::Kind::kSoftBounce;
      f.subtype = Clean(Str(*delay, "delayType"));
      f.diagnostic = Clean(diagnostic, kMaxDiagnostic);
      f.status = StatusOf(Str(r, "status"), diagnostic);
      f.remote_mta = MtaName(Str(*delay, "remoteMtaIp"));
      out.feedback.push_back(std::move(f));
    }
    return Status::Ok();
  }
  ++out.ignored_events;  // Send, Open, Click, Reject, ... and SES's subscription test message
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// SendGrid

bool IsSendGridField(std::string_view key) {
  static constexpr std::string_view kFields[] = {"email",
                                                 "timestamp",
                                                 "smtp-id",
                                                 "event",
                                                 "category",
                                                 "sg_event_id",
                                                 "sg_message_id",
                                                 "reason",
                                                 "status",
                                                 "type",
                                                 "response",
                                                 "attempt",
                                                 "useragent",
                                                 "ip",
                                                 "url",
                                                 "url_offset",
                                                 "tls",
                                                 "cert_err",
                                                 "asm_group_id",
                                                 "marketing_campaign_id",
                                                 "marketing_campaign_name",
                                                 "marketing_campaign_version",
                                                 "marketing_campaign_split_id",
                                                 "bounce_classification",
                                                 "sg_machine_open",
                                                 "sg_content_type",
                                                 "pool",
                                                 "send_at",
                                                 "sg_template_id",
                                                 "sg_template_name",
                                                 "mc_stats",
                                                 "singlesend_id",
                                                 "singlesend_name",
                                                 "template_id",
                                                 "template_version_id",
                                                 "newsletter",
                                                 "unique_args"};
  return std::find(std::begin(kFields), std::end(kFields), key) != std::end(kFields);
}

// ---------------------------------------------------------------------------------------------
// Postmark

Feedback::Kind PostmarkBounceKind(std::string_view type) {
  static constexpr std::string_view kHard[] = {"HardBounce", "BadEmailAddress"};
  static constexpr std::string_view kSoft[] = {"SoftBounce",
                                               "Transient",
                                               "DnsError",
                                               "SpamNotification",
                                               "VirusNotification",
                                               "Blocked",
                                               "ChallengeVerification",
                                               "SMTPApiError",
                                               "DMARCPolicy",
                                               "InboxPlacement",
                                               "OpenRelayTest"};
  for (std::string_view t : kHard) {
    if (type == t) return Feedback::Kind::kHardBounce;
  }
  for (std::string_view t : kSoft) {
    if (type == t) return Feedback::Kind::kSoftBounce;
  }
  if (type == "SpamComplaint") return Feedback::Kind::kComplaint;
  return Feedback::Kind::kUnknown;  // AutoResponder, AddressChange, ManuallyDeactivated, ...
}

}  // namespace

Result<WebhookResult> ParseSesWebhook(std::string_view body, const WebhookLimits& limits) {
  NUDGE_ASSIGN_OR_RETURN(Json doc, ParseJson(body, limits));
  if (!doc.is_object()) return Err(Status::Invalid("an SNS message is a JSON object"));
  WebhookResult out;
  if (Get(doc, "Type") != nullptr) {
    SnsEnvelope env;
    env.type = Str(doc, "Type");
    env.message_id = Str(doc, "MessageId");
    env.topic_arn = Str(doc, "TopicArn");
    env.subject = Str(doc, "Subject");
    env.message = Str(doc, "Message");
    env.timestamp = Str(doc, "Timestamp");
    env.token = Str(doc, "Token");
    env.subscribe_url = Str(doc, "SubscribeURL");
    env.unsubscribe_url = Str(doc, "UnsubscribeURL");
    env.signature_version = Str(doc, "SignatureVersion");
    env.signature = Str(doc, "Signature");
    env.signing_cert_url = Str(doc, "SigningCertURL");
    const std::string type = env.type;
    const std::string message = env.message;
    out.sns = std::move(env);
    if (type == "SubscriptionConfirmation") {
      out.subscribe_url = out.sns->subscribe_url;
      if (out.subscribe_url.empty()) {
        return Err(
            Status::Invalid("a SubscriptionConfirmation without SubscribeURL", "SubscribeURL"));
      }
      return out;
    }
    if (type == "UnsubscribeConfirmation") return out;
    if (type != "Notification") {
      return Err(Status::Invalid("unknown SNS message type \"" + Clean(type, 64) + "\"", "Type"));
    }
    auto inner = ParseJson(message, limits);
    if (!inner) return Err(inner.error().WithPrefix("Message"));
    Status st = AddSesNotification(*inner, limits, out);
    if (!st.ok()) return Err(st.WithPrefix("Message"));
    return out;
  }
  if (Get(doc, "notificationType") != nullptr || Get(doc, "eventType") != nullptr) {
    NUDGE_TRY(AddSesNotification(doc, limits, out));
    return out;
  }
  return Err(Status::Invalid(
      "neither an SNS message (no Type) nor an SES notification (no notificationType)"));
}

Result<WebhookResult> ParseSendGridWebhook(std::string_view body, const WebhookLimits& limits) {
  NUDGE_ASSIGN_OR_RETURN(Json doc, ParseJson(body, limits));
  if (doc.is_object()) doc = Json::array({std::move(doc)});
  if (!doc.is_array()) return Err(Status::Invalid("SendGrid posts an array of events"));
  if (doc.size() > limits.max_events) {
    return Err(Status(Code::kTooLarge, std::to_string(doc.size()) + " events, more than " +
                                           std::to_string(limits.max_events)));
  }
  WebhookResult out;
  for (size_t i = 0; i < doc.size(); ++i) {
    const Json& ev = doc[i];
    if (!ev.is_object()) {
      return Err(Status::Invalid("an event is a JSON object", "[" + std::to_string(i) + "]"));
    }
    const std::string event = Str(ev, "event");
    Feedback f;
    f.source = "sendgrid";
    f.recipient = NormalizeRecipient(Str(ev, "email"));
    f.message_id = NormalizeMessageId(Str(ev, "smtp-id"));
    f.provider_id = Clean(Str(ev, "sg_message_id"));
    const std::string reason = Str(ev, "reason");
    const std::string response = Str(ev, "response");
    const std::string& text = reason.empty() ? response : reason;
    f.diagnostic = Clean(text, kMaxDiagnostic);
    f.status = StatusOf(Str(ev, "status"), text);
    if (event == "bounce") {
      std::string type = Str(ev, "type");
      if (type.empty()) type = "bounce";
      f.subtype = Clean(type);
      if (type == "blocked" || type == "expired" ||
          KindForStatus(f.status) == Feedback::Kind::kSoftBounce) {
        f.kind = Feedback::Kind::kSoftBounce;
      } else {
        f.kind = Feedback::Kind::kHardBounce;
      }
    } else if (event == "dropped") {
      f.subtype = "dropped";
      if (reason == "Bounced Address") {
        f.kind = Feedback::Kind::kHardBounce;
      } else if (reason == "Spam Reporting Address") {
        f.kind = Feedback::Kind::kComplaint;
      } else {
        f.kind = Feedback::Kind::kUnknown;  // unsubscribed, invalid headers, ...
      }
    } else if (event == "spamreport") {
      f.subtype = "spamreport";
      f.kind = Feedback::Kind::kComplaint;
    } else if (event == "deferred") {
      f.subtype = "deferred";
      f.kind = Feedback::Kind::kSoftBounce;
    } else if (event == "delivered") {
      f.subtype = "delivered";
      f.kind = Feedback::Kind::kDelivered;
    } else {
      ++out.ignored_events;  // processed, open, click, unsubscribe, group_*
      continue;
    }
    if (f.recipient.empty()) {
      ++out.ignored_events;
      continue;
    }
    for (const auto& [key, value] : ev.items()) {
      if (IsSendGridField(key) || !(value.is_string() || value.is_number())) continue;
      AddMetadata(f, key, Str(&value));
    }
    out.feedback.push_back(std::move(f));
  }
  return out;
}

Result<WebhookResult> ParsePostmarkWebhook(std::string_view body, const WebhookLimits& limits) {
  NUDGE_ASSIGN_OR_RETURN(Json doc, ParseJson(body, limits));
  if (!doc.is_object()) return Err(Status::Invalid("a Postmark webhook body is a JSON object"));
  WebhookResult out;
  std::string record = Str(doc, "RecordType");
  if (record.empty() && Get(doc, "TypeCode") != nullptr) record = "Bounce";  // older payloads
  Feedback f;
  f.source = "postmark";
  f.provider_id = Clean(Str(doc, "MessageID"));
  std::string details = Str(doc, "Details");
  if (record == "Bounce" || record == "SpamComplaint") {
    const std::string type = Str(doc, "Type");
    f.recipient = NormalizeRecipient(Str(doc, "Email"));
    f.subtype = Clean(type);
    f.kind = record == "SpamComplaint" ? Feedback::Kind::kComplaint : PostmarkBounceKind(type);
    if (details.empty()) details = Str(doc, "Description");
  } else if (record == "Delivery") {
    f.recipient = NormalizeRecipient(Str(doc, "Recipient"));
    f.subtype = "Delivery";
    f.kind = Feedback::Kind::kDelivered;
  } else if (!record.empty()) {
    out.ignored_events = 1;  // Open, Click, SubscriptionChange
    return out;
  } else {
    return Err(Status::Invalid("no RecordType: not a Postmark webhook", "RecordType"));
  }
  if (f.recipient.empty()) {
    const char* field = record == "Delivery" ? "Recipient" : "Email";
    return Err(Status::Invalid("not an email address", field));
  }
  f.diagnostic = Clean(DropFieldType(details), kMaxDiagnostic);
  f.status = ExtractStatusCode(details);
  if (const Json* headers = Get(doc, "Headers"); headers != nullptr && headers->is_array()) {
    for (const Json& h : *headers) {
      if (feedback_internal::IEquals(Str(h, "Name"), "Message-ID")) {
        f.message_id = NormalizeMessageId(Str(h, "Value"));
        if (!f.message_id.empty()) break;
      }
    }
  }
  // The bounce or complaint itself, when Postmark includes it, knows the rest.
  const std::string content = Str(doc, "Content");
  if (!content.empty() && (f.message_id.empty() || f.status.empty())) {
    auto parsed = ParseReport(content);
    if (parsed && !parsed->empty()) {
      const Feedback* match = &parsed->front();
      for (const Feedback& p : *parsed) {
        if (p.recipient == f.recipient) match = &p;
      }
      if (f.message_id.empty()) f.message_id = match->message_id;
      if (f.status.empty() && f.kind != Feedback::Kind::kComplaint) f.status = match->status;
      if (f.diagnostic.empty()) f.diagnostic = match->diagnostic;
    }
  }
  if (const Json* metadata = Get(doc, "Metadata"); metadata != nullptr && metadata->is_object()) {
    for (const auto& [key, value] : metadata->items()) AddMetadata(f, key, Str(&value));
  }
  if (const std::string tag = Str(doc, "Tag"); !tag.empty()) AddMetadata(f, "Tag", tag);
  out.feedback.push_back(std::move(f));
  return out;
}

std::string SnsStringToSign(const SnsEnvelope& e) {
  std::string out;
  auto add = [&out](std::string_view name, const std::string& value) {
    out.append(name).append("\n").append(value).append("\n");
  };
  add("Message", e.message);
  add("MessageId", e.message_id);
  if (e.type == "Notification") {
    if (!e.subject.empty()) add("Subject", e.subject);
  } else {
    add("SubscribeURL", e.subscribe_url);
  }
  add("Timestamp", e.timestamp);
  if (e.type != "Notification") add("Token", e.token);
  add("TopicArn", e.topic_arn);
  add("Type", e.type);
  return out;
}

bool IsAmazonSnsUrl(std::string_view url) {
  if (!IStartsWith(url, "https://")) return false;
  std::string_view rest = url.substr(8);
  const size_t slash = rest.find_first_of("/?#");
  const std::string host = ToLower(rest.substr(0, slash));
  if (host.size() > 100) return false;
  std::string_view region;
  for (std::string_view suffix :
       {std::string_view(".amazonaws.com"), std::string_view(".amazonaws.com.cn")}) {
    if (host.size() > suffix.size() + 4 && host.compare(0, 4, "sns.") == 0 &&
        host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
      region = std::string_view(host).substr(4, host.size() - 4 - suffix.size());
    }
  }
  if (region.empty()) return false;
  return std::all_of(region.begin(), region.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace nudge::channel
