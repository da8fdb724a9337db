#include "channel/feedback/webhooks.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace nudge::channel {
namespace {

using Kind = Feedback::Kind;
using Json = nlohmann::json;

std::string ReadSample(const std::string& name) {
  std::ifstream in(std::string(NUDGE_FEEDBACK_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing sample " << name;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Meta(const Feedback& f, const std::string& key) {
  for (const auto& [k, v] : f.metadata) {
    if (k == key) return v;
  }
  return "<absent>";
}

TEST(Ses, BounceThroughSns) {
  auto r = ParseSesWebhook(ReadSample("ses_bounce.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->feedback.size(), 1u);
  const Feedback& f = r->feedback[0];
  EXPECT_EQ(f.kind, Kind::kHardBounce);
  EXPECT_EQ(f.recipient, "bounce@simulator.amazonses.com");
  EXPECT_EQ(f.status, "5.1.1");
  EXPECT_EQ(f.message_id, "01HSR1T2Y3U4I5O6P7A8S9D0F1.welcome-1@acme.test");
  EXPECT_EQ(f.provider_id, "0100018e4f1a29f1-2a3b4c5d-6e7f-4809-a1b2-c3d4e5f60718-000000");
  EXPECT_EQ(f.source, "ses");
  EXPECT_EQ(f.subtype, "Permanent/General");
  EXPECT_EQ(f.diagnostic, "550 5.1.1 user unknown");
  EXPECT_EQ(f.remote_mta, "205.251.242.50");
  EXPECT_EQ(Meta(f, "journey"), "welcome");
  ASSERT_TRUE(r->sns.has_value());
  EXPECT_EQ(r->sns->type, "Notification");
  EXPECT_EQ(r->sns->signature_version, "1");
  EXPECT_EQ(r->sns->signing_cert_url,
            "https://sns.us-east-1.amazonaws.com/"
            "SimpleNotificationService-60eadc530605d63b8e62a523676ef735.pem");
  EXPECT_TRUE(IsAmazonSnsUrl(r->sns->signing_cert_url));
  EXPECT_TRUE(r->subscribe_url.empty());
}

TEST(Ses, ComplaintThroughSns) {
  auto r = ParseSesWebhook(ReadSample("ses_complaint.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->feedback.size(), 1u);
  const Feedback& f = r->feedback[0];
  EXPECT_EQ(f.kind, Kind::kComplaint);
  EXPECT_EQ(f.recipient, "complaint@simulator.amazonses.com");
  EXPECT_EQ(f.status, "");
  EXPECT_EQ(f.message_id, "01HSR4A5S6D7F8G9H0J1K2L3Z4.spring-sale@acme.test");
  EXPECT_EQ(f.subtype, "abuse");
  EXPECT_EQ(r->sns->signature_version, "2");
}

TEST(Ses, SubscriptionConfirmationReturnsTheUrl) {
  auto r = ParseSesWebhook(ReadSample("ses_subscription.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(r->feedback.empty());
  EXPECT_EQ(r->subscribe_url.rfind("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                                   "&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-bounces",
                                   0),
            0u);
  EXPECT_TRUE(IsAmazonSnsUrl(r->subscribe_url));
  EXPECT_EQ(r->sns->token.substr(0, 10), "2336412f37");
}

TEST(Ses, RawMessageDeliveryAndOtherNotificationTypes) {
  const Json envelope = Json::parse(ReadSample("ses_bounce.json"));
  Json msg = Json::parse(envelope["Message"].get<std::string>());
  auto raw = ParseSesWebhook(msg.dump());
  ASSERT_TRUE(raw) << raw.error().ToString();
  ASSERT_EQ(raw->feedback.size(), 1u);
  EXPECT_FALSE(raw->sns.has_value());
  EXPECT_EQ(raw->feedback[0].kind, Kind::kHardBounce);

  msg["bounce"]["bounceType"] = "Transient";
  msg["bounce"]["bounceSubType"] = "MailboxFull";
  auto transient = ParseSesWebhook(msg.dump());
  ASSERT_TRUE(transient);
  EXPECT_EQ(transient->feedback[0].kind, Kind::kSoftBounce);
  EXPECT_EQ(transient->feedback[0].subtype, "Transient/MailboxFull");

  Json delivery = {{"notificationType", "Delivery"},
                   {"mail", msg["mail"]},
                   {"delivery",
                    {{"recipients", {"Bounce@Simulator.amazonses.com"}},
                     {"smtpResponse", "250 2.6.0 Message received"},
                     {"reportingMTA", "a8-70.smtp-out.amazonses.com"}}}};
  auto delivered = ParseSesWebhook(delivery.dump());
  ASSERT_TRUE(delivered);
  ASSERT_EQ(delivered->feedback.size(), 1u);
  EXPECT_EQ(delivered->feedback[0].kind, Kind::kDelivered);
  EXPECT_EQ(delivered->feedback[0].status, "2.6.0");

  Json delay = {{"eventType", "DeliveryDelay"},
                {"mail", msg["mail"]},
                {"deliveryDelay",
                 {{"delayType", "MailboxFull"},
                  {"delayedRecipients",
                   {{{"emailAddress", "x@example.com"},
                     {"status", "4.2.2"},
                     {"diagnosticCode", "smtp; 452 4.2.2 Mailbox full"}}}}}}};
  auto delayed = ParseSesWebhook(delay.dump());
  ASSERT_TRUE(delayed) << delayed.error().ToString();
  ASSERT_EQ(delayed->feedback.size(), 1u);
  EXPECT_EQ(delayed->feedback[0].kind, Kind::kSoftBounce);
  EXPECT_EQ(delayed->feedback[0].status, "4.2.2");

  auto open = ParseSesWebhook(R"({"eventType":"Open","mail":{},"open":{}})");
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->feedback.empty());
  EXPECT_EQ(open->ignored_events, 1u);
}

TEST(Ses, Errors) {
  auto not_json = ParseSesWebhook("{\"Type\": ");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().code(), Code::kInvalidArgument);

  auto bad_message = ParseSesWebhook(R"({"Type":"Notification","Message":"not json"})");
  ASSERT_FALSE(bad_message);
  EXPECT_EQ(bad_message.error().where(), "Message");

  auto no_recipients =
      ParseSesWebhook(R"({"Type":"Notification","Message":"{\"notificationType\":\"Bounce\"}"})");
  ASSERT_FALSE(no_recipients);
  EXPECT_EQ(no_recipients.error().where(), "Message.bounce");

  auto unknown = ParseSesWebhook(R"({"Type":"Surprise"})");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().where(), "Type");

  EXPECT_FALSE(ParseSesWebhook("[]"));
  EXPECT_FALSE(ParseSesWebhook(R"({"hello":"world"})"));
  EXPECT_FALSE(ParseSesWebhook(R"({"Type":"SubscriptionConfirmation"})"));
}

TEST(Sns, StringToSign) {
  SnsEnvelope n;
  n.type = "Notification";
  n.message = "m";
  n.message_id = "id";
  n.subject = "s";
  n.timestamp = "t";
  n.topic_arn = "arn";
  EXPECT_EQ(SnsStringToSign(n),
            "Message\nm\nMessageId\nid\nSubject\ns\nTimestamp\nt\nTopicArn\narn\nType\n"
            "Notification\n");
  n.subject.clear();
  EXPECT_EQ(SnsStringToSign(n),
            "Message\nm\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n");
  SnsEnvelope c = n;
  c.type = "SubscriptionConfirmation";
  c.subscribe_url = "u";
  c.token = "k";
  EXPECT_EQ(SnsStringToSign(c),
            "Message\nm\nMessageId\nid\nSubscribeURL\nu\nTimestamp\nt\nToken\nk\nTopicArn\narn\n"
            "Type\nSubscriptionConfirmation\n");
}

TEST(Sns, OnlyAmazonSnsUrls) {
  EXPECT_TRUE(IsAmazonSnsUrl("https://sns.eu-west-1.amazonaws.com/x.pem"));
  EXPECT_TRUE(IsAmazonSnsUrl("https://sns.cn-north-1.amazonaws.com.cn/?Action=Confirm"));
  EXPECT_FALSE(IsAmazonSnsUrl("http://sns.eu-west-1.amazonaws.com/x.pem"));
  EXPECT_FALSE(IsAmazonSnsUrl("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"));
  EXPECT_FALSE(IsAmazonSnsUrl("https://evil.example/sns.eu-west-1.amazonaws.com/"));
  EXPECT_FALSE(IsAmazonSnsUrl("https://user@sns.eu-west-1.amazonaws.com/"));
  EXPECT_FALSE(IsAmazonSnsUrl("https://sns.eu-west-1.amazonaws.com:8443/"));
  EXPECT_FALSE(IsAmazonSnsUrl("https://sns..amazonaws.com/"));
  EXPECT_FALSE(IsAmazonSnsUrl(""));
}

TEST(SendGrid, Events) {
  auto r = ParseSendGridWebhook(ReadSample("sendgrid_events.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->ignored_events, 2u);  // processed, open
  ASSERT_EQ(r->feedback.size(), 6u);
  const Feedback& bounce = r->feedback[0];
  EXPECT_EQ(bounce.kind, Kind::kHardBounce);
  EXPECT_EQ(bounce.recipient, "hard.bounce@example.com");
  EXPECT_EQ(bounce.status, "5.1.1");
  EXPECT_EQ(bounce.message_id, "01HSRA2B3C4D5E6F7G8H9J0K1L.welcome-1@acme.test");
  EXPECT_EQ(bounce.provider_id, "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.1");
  EXPECT_EQ(bounce.source, "sendgrid");
  EXPECT_EQ(bounce.subtype, "bounce");
  EXPECT_EQ(Meta(bounce, "journey"), "welcome");
  EXPECT_EQ(Meta(bounce, "step"), "email-1");
  EXPECT_EQ(Meta(bounce, "bounce_classification"), "<absent>");

  const Feedback& blocked = r->feedback[1];
  EXPECT_EQ(blocked.kind, Kind::kSoftBounce);
  EXPECT_EQ(blocked.subtype, "blocked");
  EXPECT_EQ(blocked.status, "5.7.1");

  const Feedback& dropped = r->feedback[2];
  EXPECT_EQ(dropped.kind, Kind::kHardBounce);
  EXPECT_EQ(dropped.recipient, "dropped@example.com");
  EXPECT_EQ(dropped.status, "5.0.0");
  EXPECT_EQ(dropped.message_id, "01HSRA4B5C6D7E8F9G0H1J2K3L.newsletter@acme.test");

  EXPECT_EQ(r->feedback[3].kind, Kind::kUnknown);  // dropped: Unsubscribed Address
  EXPECT_EQ(r->feedback[3].diagnostic, "Unsubscribed Address");

  const Feedback& spam = r->feedback[4];
  EXPECT_EQ(spam.kind, Kind::kComplaint);
  EXPECT_EQ(spam.recipient, "spam@example.com");
  EXPECT_EQ(spam.status, "");
  EXPECT_EQ(spam.message_id, "01HSRA5B6C7D8E9F0G1H2J3K4L.spring-sale@acme.test");

  const Feedback& deferred = r->feedback[5];
  EXPECT_EQ(deferred.kind, Kind::kSoftBounce);
  EXPECT_EQ(deferred.status, "4.7.1");
  EXPECT_EQ(deferred.diagnostic, "451 4.7.1 Greylisted, please try again in 300 seconds");
}

TEST(SendGrid, ShapesAndLimits) {
  auto single = ParseSendGridWebhook(R"({"event":"spamreport","email":"a@example.com"})");
  ASSERT_TRUE(single);
  EXPECT_EQ(single->feedback.size(), 1u);

  auto no_email = ParseSendGridWebhook(R"([{"event":"bounce","email":"not an address"}])");
  ASSERT_TRUE(no_email);
  EXPECT_TRUE(no_email->feedback.empty());
  EXPECT_EQ(no_email->ignored_events, 1u);

  auto not_object = ParseSendGridWebhook(R"([{"event":"bounce"}, 3])");
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().where(), "[1]");

  EXPECT_FALSE(ParseSendGridWebhook("\"text\""));

  WebhookLimits limits;
  limits.max_events = 2;
  auto many = ParseSendGridWebhook("[{},{},{}]", limits);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().code(), Code::kTooLarge);
}

TEST(Postmark, HardBounceWithContentAndMetadata) {
  auto r = ParsePostmarkWebhook(ReadSample("postmark_bounce.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->feedback.size(), 1u);
  const Feedback& f = r->feedback[0];
  EXPECT_EQ(f.kind, Kind::kHardBounce);
  EXPECT_EQ(f.recipient, "john@example.com");
  EXPECT_EQ(f.status, "5.1.1");
  EXPECT_EQ(f.message_id, "01HSTB1N2M3K4J5H6G7F8D9S0A.welcome-1@acme.test");
  EXPECT_EQ(f.provider_id, "883953f4-6105-42a2-a16a-77a8eac79483");
  EXPECT_EQ(f.source, "postmark");
  EXPECT_EQ(f.subtype, "HardBounce");
  EXPECT_EQ(f.diagnostic.rfind("550 5.1.1 The email account", 0), 0u);
  EXPECT_EQ(Meta(f, "journey"), "welcome");
  EXPECT_EQ(Meta(f, "attempt"), "1");
  EXPECT_EQ(Meta(f, "Tag"), "welcome");
}

TEST(Postmark, SpamComplaintWithHeaders) {
  auto r = ParsePostmarkWebhook(ReadSample("postmark_spam_complaint.json"));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->feedback.size(), 1u);
  const Feedback& f = r->feedback[0];
  EXPECT_EQ(f.kind, Kind::kComplaint);
  EXPECT_EQ(f.recipient, "spam.reporter@example.com");
  EXPECT_EQ(f.status, "");
  EXPECT_EQ(f.message_id, "01HSTC1V2B3N4M5L6K7J8H9G0F.spring-sale@acme.test");
  EXPECT_EQ(f.subtype, "SpamComplaint");
}

TEST(Postmark, TypesDeliveryAndErrors) {
  auto soft = ParsePostmarkWebhook(
      R"({"RecordType":"Bounce","Type":"SoftBounce","Email":"a@example.com",
          "Details":"smtp;452 4.2.2 mailbox full"})");
  ASSERT_TRUE(soft);
  EXPECT_EQ(soft->feedback[0].kind, Kind::kSoftBounce);
  EXPECT_EQ(soft->feedback[0].status, "4.2.2");

  auto legacy = ParsePostmarkWebhook(
      R"({"Type":"HardBounce","TypeCode":1,"Email":"b@example.com","MessageID":"x"})");
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->feedback[0].kind, Kind::kHardBounce);

  auto auto_reply = ParsePostmarkWebhook(
      R"({"RecordType":"Bounce","Type":"AutoResponder","Email":"c@example.com"})");
  ASSERT_TRUE(auto_reply);
  EXPECT_EQ(auto_reply->feedback[0].kind, Kind::kUnknown);

  auto delivery = ParsePostmarkWebhook(
      R"({"RecordType":"Delivery","Recipient":"d@example.com","MessageID":"y",
          "Details":"Test delivery webhook details"})");
  ASSERT_TRUE(delivery);
  EXPECT_EQ(delivery->feedback[0].kind, Kind::kDelivered);
  EXPECT_EQ(delivery->feedback[0].recipient, "d@example.com");

  auto open = ParsePostmarkWebhook(R"({"RecordType":"Open","Recipient":"e@example.com"})");
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->feedback.empty());
  EXPECT_EQ(open->ignored_events, 1u);

  auto no_type = ParsePostmarkWebhook(R"({"Email":"f@example.com"})");
  ASSERT_FALSE(no_type);
  EXPECT_EQ(no_type.error().where(), "RecordType");

  auto bad_email = ParsePostmarkWebhook(R"({"RecordType":"Bounce","Email":""})");
  ASSERT_FALSE(bad_email);
  EXPECT_EQ(bad_email.error().where(), "Email");
}

TEST(Webhooks, BoundedInput) {
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  for (auto* parse : {&ParseSesWebhook, &ParseSendGridWebhook, &ParsePostmarkWebhook}) {
    auto r = (*parse)(deep, {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Code::kTooLarge);
  }
  WebhookLimits limits;
  limits.max_body_bytes = 10;
  auto big = ParseSendGridWebhook("[{},{},{},{}]", limits);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), Code::kTooLarge);
  limits = WebhookLimits();
  limits.max_json_values = 5;
  auto values = ParseSendGridWebhook("[1,2,3,4,5,6]", limits);
  ASSERT_FALSE(values);
  EXPECT_EQ(values.error().code(), Code::kTooLarge);
  for (const char* junk : {"", "nul", "{\"a\":\"\\ud800\"}", "\xFF\xFE", "[1,]"}) {
    EXPECT_FALSE(ParseSendGridWebhook(junk)) << junk;
  }
}

}  // namespace
}  // namespace nudge::channel
