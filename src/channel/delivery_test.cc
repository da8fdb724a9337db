// The delivery pipeline on a virtual clock: journeys queue messages, the dispatcher checks,
// renders and hands them to a recording channel, and the outcomes land on the messages and as
// events. (The real relays are exercised by tests/node/delivery.test.mjs.)
#include "channel/delivery.h"

#include <gtest/gtest.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "channel/feedback_processor.h"
#include "journey/sandbox.h"

namespace nudge::channel {
namespace {

using nlohmann::json;

class RecordingChannel final : public Channel {
 public:
  explicit RecordingChannel(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  Status Send(Outbound out, DeliveryCallback done) override {
    DeliveryResult r;
    {
      std::lock_guard lock(mu);
      sent.push_back(out);
      if (!script.empty()) {
        r = script.front();
        script.erase(script.begin());
      } else {
        r.status = DeliveryStatus::kSent;
        r.code = 250;
        r.detail = "250 ok";
      }
    }
    done(r);
    return Status::Ok();
  }
  void Shutdown(core::Millis) override {}
  std::mutex mu;
  std::vector<Outbound> sent;
  std::vector<DeliveryResult> script;  // answers to give, in order; then "sent"

 private:
  std::string name_;
};

class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sb = journey::Sandbox::Create(1'780'000'000'000);  // 2026-05-28
    ASSERT_TRUE(sb) << sb.error().ToString();
    box = std::move(*sb);
    templates = std::make_unique<content::TemplateLibrary>(box->store(), box->clock());
    secrets = std::make_unique<track::SecretBook>(box->store());
    auto email = std::make_unique<RecordingChannel>("email");
    mail = email.get();
    ASSERT_TRUE(channels.Add(std::move(email)).ok());
    dispatcher = MakeDispatcher(Options());
    ASSERT_TRUE(dispatcher->Start().ok());
    Put("id: hello\nchannel: email\nsubject: \"Hi {{ contact.traits.first_name }}\"\n"
        "html: \"<p>Hello {{ contact.traits.first_name }}, see <a href='https://acme.test/pricing'>"
        "pricing</a>. {{ journey.id }}/{{ journey.step }}</p>\"\n");
    ASSERT_TRUE(box->PutJourney("id: j\ntrigger: { event: Go }\nsteps:\n"
                                "  - id: mail\n    send: { channel: email, template: hello }\n",
                                "journeys/j.yaml")
                    .ok());
  }

  static DeliveryOptions Options() {
    DeliveryOptions o;
    o.background = false;
    o.public_url = "https://nudge.test";
    o.message_id_domain = "acme.test";
    o.retry_initial = 60'000;
    o.max_attempts = 3;
    return o;
  }
  std::unique_ptr<Dispatcher> MakeDispatcher(DeliveryOptions o) {
    return std::make_unique<Dispatcher>(
        DeliveryDeps{box->store(), box->segments(), box->journeys(), *templates, *secrets, channels,
                     box->clock(), nullptr},
        std::move(o));
  }

  void Put(const std::string& yaml) {
    auto r = templates->Put(box->workspace(), yaml, "t", std::nullopt);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  void Identify(const std::string& user, const json& traits) {
    ASSERT_TRUE(
        box->Send(json{{"type", "identify"}, {"userId", user}, {"traits", traits}}.dump()).ok());
  }
  void Go(const std::string& user) {
    ASSERT_TRUE(box->Send(json{{"type", "track"}, {"userId", user}, {"event", "Go"}}.dump()).ok());
  }

  store::Message Only() {
    auto ms = box->Messages();
    EXPECT_TRUE(ms);
    EXPECT_EQ(ms->size(), 1u);
    return ms->empty() ? store::Message{} : ms->front();
  }

  std::vector<std::string> EventNames(const std::string& user) {
    std::vector<std::string> names;
    auto evs = box->Events(box->ContactOf(user));
    if (!evs) return names;
    for (const auto& e : *evs) names.push_back(e.name);
    return names;
  }

  std::unique_ptr<journey::Sandbox> box;
  std::unique_ptr<content::TemplateLibrary> templates;
  std::unique_ptr<track::SecretBook> secrets;
  ChannelRegistry channels;
  RecordingChannel* mail = nullptr;
  std::unique_ptr<Dispatcher> dispatcher;
};

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST_F(DeliveryTest, RendersTracksAndRecordsTheSend) {
  Identify("ann", {{"email", "Ann@Example.COM"}, {"first_name", "Ann"}});
  Go("ann");
  auto n = dispatcher->RunOnce();
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(*n, 1);
  ASSERT_EQ(mail->sent.size(), 1u);
  const Outbound& out = mail->sent[0];
  EXPECT_EQ(out.recipient, "Ann@example.com");
  EXPECT_EQ(out.rendered.subject, "Hi Ann");
  // The link goes through a signed redirect; the pixel is there; the journey is in context.
  EXPECT_EQ(out.rendered.html.find("href='https://acme.test/pricing'"), std::string::npos);
  EXPECT_NE(out.rendered.html.find("https://nudge.test/t/c/"), std::string::npos);
  EXPECT_NE(out.rendered.html.find("https://nudge.test/t/o/"), std::string::npos);
  EXPECT_NE(out.rendered.html.find("j/mail"), std::string::npos);
  EXPECT_EQ(out.unsubscribe_url.rfind("https://nudge.test/t/u/", 0), 0u);
  EXPECT_EQ(out.feedback_id, "j:mail:" + std::to_string(box->workspace()) + ":nudge");
  const store::Message m = Only();
  EXPECT_EQ(m.status, "sent");
  EXPECT_EQ(m.attempts, 1);
  EXPECT_EQ(out.message_id_header, m.message_id_header);
  EXPECT_NE(m.message_id_header.find("@acme.test"), std::string::npos);
  EXPECT_TRUE(Contains(EventNames("ann"), "Email Sent"));
  // Nothing more to do.
  n = dispatcher->RunOnce();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0);
  EXPECT_EQ(mail->sent.size(), 1u);
}

TEST_F(DeliveryTest, SuppressedAndUnsubscribedAddressesGetNothing) {
  Identify("sue", {{"email", "sue@example.com"}});
  ASSERT_TRUE(box->store()
                  .WriteSync([&](store::WriteTxn& t) {
                    return t.AddSuppression(
                        {box->workspace(), "email", "sue@example.com", "manual", box->Now(), ""});
                  })
                  .ok());
  Go("sue");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_TRUE(mail->sent.empty());
  store::Message m = Only();
  EXPECT_EQ(m.status, "suppressed");
  EXPECT_NE(m.detail.find("manual"), std::string::npos);

  Identify("uma", {{"email", "uma@example.com"}});
  store::ConsentRecord r;
  r.subscription = {box->workspace(), box->ContactOf("uma"), "email", "", "unsubscribed",
                    box->Now()};
  r.source = "test";
  ASSERT_TRUE(box->segments().ApplyConsent(r, "Unsubscribed", "{}").ok());
  Go("uma");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_TRUE(mail->sent.empty());
  auto ms = box->Messages();
  ASSERT_TRUE(ms);
  ASSERT_EQ(ms->size(), 2u);
  EXPECT_EQ(ms->back().status, "suppressed");
  EXPECT_NE(ms->back().detail.find("not subscribed"), std::string::npos);
}

TEST_F(DeliveryTest, TransactionalTemplatesIgnoreUnsubscribesButNotSuppressions) {
  Put("id: hello\nchannel: email\ntransactional: true\nsubject: Receipt\nhtml: \"<p>x</p>\"\n");
  Identify("uma", {{"email", "uma@example.com"}});
  store::ConsentRecord r;
  r.subscription = {box->workspace(), box->ContactOf("uma"), "email", "", "unsubscribed",
                    box->Now()};
  ASSERT_TRUE(box->segments().ApplyConsent(r, "", "").ok());
  Go("uma");
  ASSERT_TRUE(dispatcher->RunOnce());
  ASSERT_EQ(mail->sent.size(), 1u);
  EXPECT_TRUE(mail->sent[0].transactional);
  EXPECT_EQ(Only().status, "sent");
}

TEST_F(DeliveryTest, AnUnsubscribeSuppressionStopsMarketingButNotReceipts) {
  Identify("una", {{"email", "una@example.com"}});
  ASSERT_TRUE(box->store()
                  .WriteSync([&](store::WriteTxn& t) {
                    return t.AddSuppression({box->workspace(), "email", "una@example.com",
                                             "unsubscribed", box->Now(), ""});
                  })
                  .ok());
  Go("una");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_TRUE(mail->sent.empty());
  EXPECT_EQ(Only().status, "suppressed");
  // The journey enters once per contact: a second contact for the receipt.
  Identify("ula", {{"email", "ula@example.com"}});
  ASSERT_TRUE(box->store()
                  .WriteSync([&](store::WriteTxn& t) {
                    return t.AddSuppression({box->workspace(), "email", "ula@example.com",
                                             "unsubscribed", box->Now(), ""});
                  })
                  .ok());
  Put("id: hello\nchannel: email\ntransactional: true\nsubject: Receipt\nhtml: \"<p>x</p>\"\n");
  Go("ula");
  ASSERT_TRUE(dispatcher->RunOnce());
  ASSERT_EQ(mail->sent.size(), 1u) << "a receipt still goes after an unsubscribe";
}

TEST_F(DeliveryTest, TheSameSoftBounceReportedAgainIsCountedOnce) {
  Identify("sam", {{"email", "sam@example.com"}});
  FeedbackProcessor fp(box->store(), box->segments(), box->clock(), nullptr);
  Feedback f;
  f.kind = Feedback::Kind::kSoftBounce;
  f.recipient = "sam@example.com";
  f.status = "4.2.2";
  f.source = "dsn";
  auto suppressed = [&] {
    std::optional<store::Suppression> s;
    EXPECT_TRUE(box->store()
                    .Read([&](store::ReadTxn& r) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(
                          s, r.FindSuppression(box->workspace(), "email", "sam@example.com"));
                      return Status::Ok();
                    })
                    .ok());
    return s.has_value();
  };
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(fp.Apply(f, box->workspace()));
  EXPECT_FALSE(suppressed()) << "one report, delivered six times";
  auto names = EventNames("sam");
  EXPECT_EQ(std::count(names.begin(), names.end(), "Email Bounced"), 1);
  for (int i = 0; i < 4; ++i) {
    f.provider_id = "report-" + std::to_string(i);
    ASSERT_TRUE(fp.Apply(f, box->workspace()));
  }
  EXPECT_TRUE(suppressed()) << "five different soft bounces";
}

TEST_F(DeliveryTest, AWebhookHardBounceForAnUnknownAddressSuppressesIt) {
  FeedbackProcessor fp(box->store(), box->segments(), box->clock(), nullptr);
  Feedback f;
  f.kind = Feedback::Kind::kHardBounce;
  f.recipient = "ghost@example.com";
  f.source = "ses";
  auto r = fp.Apply(f, box->workspace());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(r->suppressed);
  // A contact made later with that address gets nothing.
  Identify("gho", {{"email", "ghost@example.com"}});
  Go("gho");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_TRUE(mail->sent.empty());
  EXPECT_EQ(Only().status, "suppressed");
  // Without a workspace (a DSN by mail for an address of no contact) nothing is guessed.
  f.recipient = "nobody@example.com";
  auto none = fp.Apply(f);
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->suppressed);
}

// A complaint suppresses the address and unsubscribes the contact, with the Unsubscribed event
// a journey or segment may wait for; the same report again records nothing more.
TEST_F(DeliveryTest, AComplaintUnsubscribesWithAnEvent) {
  Identify("cai", {{"email", "cai@example.com"}});
  FeedbackProcessor fp(box->store(), box->segments(), box->clock(), nullptr);
  Feedback f;
  f.kind = Feedback::Kind::kComplaint;
  f.recipient = "cai@example.com";
  f.source = "arf";
  f.report_id = "r1@isp.example";
  for (int i = 0; i < 2; ++i) {
    auto r = fp.Apply(f, box->workspace());
    ASSERT_TRUE(r) << r.error().ToString();
  }
  auto names = EventNames("cai");
  EXPECT_EQ(std::count(names.begin(), names.end(), "Email Marked as Spam"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "Unsubscribed"), 1);
}

TEST_F(DeliveryTest, TemporaryFailuresRetryWithBackoffThenFail) {
  Identify("tim", {{"email", "tim@example.com"}});
  for (int i = 0; i < 3; ++i)
    mail->script.push_back({DeliveryStatus::kTemporary, 421, "421 try later", "", false, false});
  Go("tim");
  ASSERT_TRUE(dispatcher->RunOnce());
  store::Message m = Only();
  EXPECT_EQ(m.status, "queued");
  EXPECT_EQ(m.attempts, 1);
  EXPECT_GE(m.send_at, box->Now() + 48'000);  // 60 s ± 20 %
  EXPECT_LE(m.send_at, box->Now() + 72'000);
  // Not due yet: nothing happens.
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_EQ(mail->sent.size(), 1u);
  ASSERT_TRUE(box->Advance(80'000).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_EQ(mail->sent.size(), 2u);
  EXPECT_EQ(mail->sent[1].message_id_header, mail->sent[0].message_id_header)
      << "a retry is the same message";
  ASSERT_TRUE(box->Advance(200'000).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  m = Only();
  EXPECT_EQ(m.status, "failed");
  EXPECT_EQ(m.attempts, 3);
  EXPECT_NE(m.detail.find("gave up after 3 attempts"), std::string::npos) << m.detail;
  EXPECT_TRUE(Contains(EventNames("tim"), "Email Failed"));
}

// No try after give_up_after since the message was queued: a backoff that would end past it
// ends at it, and the failure there is final.
TEST_F(DeliveryTest, NoRetryComesAfterGiveUpAfter) {
  DeliveryOptions o = Options();
  o.max_attempts = 10;
  o.give_up_after = 100'000;  // backoffs: 60 s, then about 120 s
  dispatcher = MakeDispatcher(std::move(o));
  ASSERT_TRUE(dispatcher->Start().ok());
  Identify("gil", {{"email", "gil@example.com"}});
  for (int i = 0; i < 5; ++i)
    mail->script.push_back({DeliveryStatus::kTemporary, 421, "421 try later", "", false, false});
  Go("gil");
  const core::Millis queued = box->Now();
  ASSERT_TRUE(dispatcher->RunOnce());
  ASSERT_TRUE(box->Advance(80'000).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  store::Message m = Only();
  ASSERT_EQ(m.attempts, 2);
  EXPECT_EQ(m.status, "queued");
  EXPECT_EQ(m.send_at, queued + 100'000) << "the last try at the deadline, not past it";
  ASSERT_TRUE(box->Advance(20'000).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  m = Only();
  EXPECT_EQ(m.attempts, 3);
  EXPECT_EQ(m.status, "failed") << m.detail;
}

TEST_F(DeliveryTest, ARefusedAddressIsAHardBounceAndSuppressed) {
  Identify("bob", {{"email", "nobody@example.com"}});
  mail->script.push_back(
      {DeliveryStatus::kPermanent, 550, "550 5.1.1 no such user", "primary", true, false});
  Go("bob");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_EQ(Only().status, "failed");
  EXPECT_TRUE(Contains(EventNames("bob"), "Email Bounced"));
  std::optional<store::Suppression> s;
  ASSERT_TRUE(box->store()
                  .Read([&](store::ReadTxn& r) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(
                        s, r.FindSuppression(box->workspace(), "email", "nobody@example.com"));
                    return Status::Ok();
                  })
                  .ok());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->reason, "hard_bounce");
  // The next message to the address is suppressed without trying.
  Go("bob");
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_EQ(mail->sent.size(), 1u);
}

TEST_F(DeliveryTest, QuietHoursAtSendTimeDeferTheMessage) {
  // 2026-05-28T22:00 in Berlin is inside 21:00-08:00.
  ASSERT_TRUE(box->PutPolicies("timezone: Europe/Berlin\nquiet_hours: { email: { from: \"21:00\", "
                               "to: \"08:00\" } }\n",
                               "policies.yaml")
                  .ok());
  Identify("qin", {{"email", "qin@example.com"}});
  // The journey checked quiet hours when it queued; make the message due inside them now.
  Go("qin");
  store::Message m = Only();
  if (m.status == "queued") {
    ASSERT_TRUE(dispatcher->RunOnce());
    m = Only();
  }
  if (m.status == "sent") GTEST_SKIP() << "the sandbox's start is outside the quiet hours";
  EXPECT_EQ(m.status, "deferred_quiet_hours");
  EXPECT_TRUE(mail->sent.empty());
  ASSERT_TRUE(box->AdvanceTo(m.send_at + 1000).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_EQ(mail->sent.size(), 1u);
  EXPECT_EQ(Only().status, "sent");
}

TEST_F(DeliveryTest, AMessageLeftSendingByACrashGoesAgain) {
  Identify("cat", {{"email", "cat@example.com"}});
  Go("cat");
  store::Message m = Only();
  m.status = "sending";
  m.attempts = 1;
  ASSERT_TRUE(
      box->store().WriteSync([&](store::WriteTxn& t) { return t.UpdateMessageDelivery(m); }).ok());
  ASSERT_TRUE(dispatcher->RunOnce());
  EXPECT_TRUE(mail->sent.empty()) << "a message being sent is not picked twice";
  ASSERT_TRUE(dispatcher->Start().ok());  // what a restart does first
  ASSERT_TRUE(dispatcher->RunOnce());
  ASSERT_EQ(mail->sent.size(), 1u);
  EXPECT_EQ(Only().status, "sent");
  EXPECT_EQ(Only().attempts, 2);
}

// A pick reads the due messages from a snapshot. If, meanwhile, another pick claims, sends and
// settles one of them, the snapshot still shows it queued: it must not go out a second time.
TEST_F(DeliveryTest, APickWhoseSnapshotPredatesASendDoesNotSendItAgain) {
  Identify("dot", {{"email", "dot@example.com"}});
  Go("dot");
  Dispatcher* self = nullptr;
  int inner_runs = 0;
  DeliveryOptions o = Options();
  o.after_due_read = [&] {
    if (inner_runs++ > 0) return;  // only the outer pick lets another run in between
    auto r = self->RunOnce();
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(*r, 1) << "the inner pick takes the message";
  };
  auto racing = MakeDispatcher(std::move(o));
  self = racing.get();
  ASSERT_TRUE(racing->Start().ok());
  auto outer = racing->RunOnce();
  ASSERT_TRUE(outer) << outer.error().ToString();
  EXPECT_GE(inner_runs, 1);
  EXPECT_EQ(*outer, 0) << "the outer pick, reading an older snapshot, leaves the message alone";
  ASSERT_EQ(mail->sent.size(), 1u) << "one send, not two";
  EXPECT_EQ(Only().status, "sent");
  EXPECT_EQ(Only().attempts, 1);
}

TEST_F(DeliveryTest, MissingTemplateOrAddressFailsWithAReason) {
  Identify("nel", {{"first_name", "Nel"}});  // no email
  Go("nel");
  ASSERT_TRUE(dispatcher->RunOnce());
  store::Message m = Only();
  EXPECT_EQ(m.status, "failed");
  EXPECT_NE(m.detail.find("no email address"), std::string::npos);
  ASSERT_TRUE(templates->Delete(box->workspace(), "hello"));
  Identify("eve", {{"email", "eve@example.com"}});
  Go("eve");
  ASSERT_TRUE(dispatcher->RunOnce());
  auto ms = box->Messages();
  ASSERT_TRUE(ms);
  EXPECT_EQ(ms->back().status, "failed");
  EXPECT_NE(ms->back().detail.find("not defined"), std::string::npos);
}

}  // namespace
}  // namespace nudge::channel
