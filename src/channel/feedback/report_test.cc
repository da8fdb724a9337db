#include "channel/feedback/report.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace nudge::channel {
namespace {

using Kind = Feedback::Kind;

std::string ReadSample(const std::string& name) {
  std::ifstream in(std::string(NUDGE_FEEDBACK_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing sample " << name;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The same message with the other line ending convention (LF <-> CRLF), which must parse alike.
std::string SwapLineEnds(const std::string& text) {
  std::string out;
  const bool crlf = text.find("\r\n") != std::string::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    if (crlf && text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    if (!crlf && text[i] == '\n') out += '\r';
    out += text[i];
  }
  return out;
}

struct Sample {
  const char* file;
  Kind kind;
  const char* recipient;
  const char* status;
  const char* message_id;
  const char* source;
};

void PrintTo(const Sample& s, std::ostream* os) { *os << s.file; }

class SampleTest : public ::testing::TestWithParam<Sample> {};

TEST_P(SampleTest, KindRecipientStatusAndOriginalMessageId) {
  const Sample& s = GetParam();
  const std::string raw = ReadSample(s.file);
  for (const std::string& text : {raw, SwapLineEnds(raw)}) {
    auto parsed = ParseReport(text);
    ASSERT_TRUE(parsed) << s.file << ": " << parsed.error().ToString();
    ASSERT_EQ(parsed->size(), 1u) << s.file;
    const Feedback& f = parsed->front();
    EXPECT_EQ(FeedbackKindName(f.kind), FeedbackKindName(s.kind)) << s.file;
    EXPECT_EQ(f.recipient, s.recipient) << s.file;
    EXPECT_EQ(f.status, s.status) << s.file;
    EXPECT_EQ(f.message_id, s.message_id) << s.file;
    EXPECT_EQ(f.source, s.source) << s.file;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Samples, SampleTest,
    ::testing::Values(Sample{"dsn_rfc3464_hard.eml", Kind::kHardBounce, "louisl@example.net",
                             "5.1.1", "01HRZ8Q2M1V4K7T3Y6P9C0B5D.welcome-3@acme.test", "dsn"},
                      Sample{"dsn_delayed.eml", Kind::kSoftBounce, "carla@slow.example.org",
                             "4.4.1", "01HS1AB2CD3EF4GH5JK6MN7PQ8.cart-1@acme.test", "dsn"},
                      Sample{"postfix_bounce.eml", Kind::kHardBounce, "no.such.user@example.com",
                             "5.1.1", "01HS3XQ7W8E9R0T1Y2U3I4O5P6.welcome-1@acme.test", "dsn"},
                      Sample{"exim_bounce.eml", Kind::kHardBounce, "ghost@example.org", "5.1.1",
                             "01HS6M1N2B3V4C5X6Z7A8S9D0F.integrations-2@acme.test", "dsn"},
                      Sample{"gmail_ndr.eml", Kind::kHardBounce, "nosuchuser@gmail.com", "5.1.1",
                             "01HS9K2J3H4G5F6D7S8A9P0O1I.pricing-nurture-1@acme.test", "dsn"},
                      Sample{"outlook_ndr.eml", Kind::kHardBounce, "j.doe@contoso.com", "5.1.10",
                             "01HSC4R5T6Y7U8I9O0P1A2S3D4.invoice-ready@acme.test", "dsn"},
                      Sample{"qmail_bounce.eml", Kind::kHardBounce, "fred@oldhost.example.net",
                             "5.1.1", "01HSF0A1S2D3F4G5H6J7K8L9Z0.winback@acme.test", "text"},
                      Sample{"arf_abuse.eml", Kind::kComplaint, "somebody@mailbox.example", "",
                             "01HSHQ4W5E6R7T8Y9U0I1O2P3A.spring-sale@acme.test", "arf"},
                      Sample{"arf_redacted.eml", Kind::kComplaint, "", "",
                             "01HSK0Z9X8C7V6B5N4M3L2K1J0.spring-sale@acme.test", "arf"},
                      Sample{"jmrp_complaint.eml", Kind::kComplaint, "reader@outlook.example", "",
                             "01HSMB7N8M9K0J1H2G3F4D5S6A.spring-sale@acme.test", "jmrp"}),
    [](const ::testing::TestParamInfo<Sample>& info) {
      std::string name = info.param.file;
      return name.substr(0, name.find('.'));
    });

TEST(Dsn, StandardHardBounceDetails) {
  auto parsed = ParseReport(ReadSample("dsn_rfc3464_hard.eml"));
  ASSERT_TRUE(parsed);
  const Feedback& f = parsed->front();
  EXPECT_TRUE(Suppresses(f));
  EXPECT_EQ(f.subtype, "failed");
  EXPECT_EQ(f.envelope_id, "nudge-env-3f1c9a");
  EXPECT_EQ(f.remote_mta, "mbox.example.net");
  EXPECT_EQ(f.diagnostic, "550 5.1.1 <louisl@example.net>... User unknown");
}

TEST(Dsn, FoldedDiagnosticIsOneLine) {
  auto parsed = ParseReport(ReadSample("postfix_bounce.eml"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().diagnostic,
            "550 5.1.1 <no.such.user@example.com>: Recipient address rejected: User unknown "
            "in virtual mailbox table");
  EXPECT_EQ(parsed->front().remote_mta, "mx1.example.com");
}

TEST(Dsn, GmailRemoteMtaWithoutItsComment) {
  auto parsed = ParseReport(ReadSample("gmail_ndr.eml"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().remote_mta, "gmail-smtp-in.l.google.com");
  EXPECT_EQ(parsed->front().diagnostic.rfind("550-5.1.1 The email account that you tried", 0), 0u);
}

TEST(Dsn, DelayedIsSoftAndNotSuppressed) {
  auto parsed = ParseReport(ReadSample("dsn_delayed.eml"));
  ASSERT_TRUE(parsed);
  EXPECT_FALSE(Suppresses(parsed->front()));
  EXPECT_EQ(parsed->front().subtype, "delayed");
  EXPECT_EQ(parsed->front().diagnostic,
            "connect to mx.slow.example.org[192.0.2.45]:25: Connection timed out");
}

// A minimal DSN around the given delivery-status body and optional returned headers.
std::string Dsn(const std::string& status_body, const std::string& returned = "") {
  std::string m =
      "From: MAILER-DAEMON@mx.example.net\r\n"
      "Subject: Returned mail\r\n"
      "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n"
      "\r\n"
      "--B\r\n"
      "Content-Type: text/plain\r\n\r\n"
      "notice\r\n"
      "--B\r\n"
      "Content-Type: message/delivery-status\r\n\r\n" +
      status_body + "\r\n";
  if (!returned.empty()) {
    m += "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + returned + "\r\n";
  }
  return m + "--B--\r\n";
}

TEST(Dsn, XOriginalMessageIdWhenNoHeadersAreReturned) {
  auto parsed = ParseReport(
      Dsn("Reporting-MTA: dns; googlemail.com\r\nX-Original-Message-ID: <orig@acme.test>\r\n\r\n"
          "Final-Recipient: rfc822; a@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().message_id, "orig@acme.test");
}

TEST(Dsn, SeveralRecipientsEvenWithoutBlankLinesBetweenThem) {
  auto parsed = ParseReport(
      Dsn("Reporting-MTA: dns; mx.example.net\r\n\r\n"
          "Final-Recipient: rfc822; full@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\n"
          "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n"
          "Final-Recipient: rfc822; ok@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
          "Final-Recipient: rfc822; later@example.com\r\nAction: failed\r\nStatus: 4.4.7\r\n\r\n"
          "Original-Recipient: rfc822; only-original@example.com\r\nAction: failed\r\n"
          "Diagnostic-Code: smtp; 550 5.7.1 Rejected by policy\r\n\r\n"
          "Final-Recipient: x400; not an address\r\nAction: failed\r\nStatus: 5.1.1\r\n",
          "Message-Id: <m@acme.test>\r\nTo: full@example.com\r\n"));
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->size(), 4u);
  EXPECT_EQ((*parsed)[0].recipient, "full@example.com");
  EXPECT_EQ((*parsed)[0].kind, Kind::kSoftBounce);  // mailbox full is counted, not suppressed
  EXPECT_EQ((*parsed)[1].recipient, "ok@example.com");
  EXPECT_EQ((*parsed)[1].kind, Kind::kDelivered);
  EXPECT_EQ((*parsed)[2].kind, Kind::kSoftBounce);  // failed, but with a 4.X.X status
  EXPECT_EQ((*parsed)[3].recipient, "only-original@example.com");
  EXPECT_EQ((*parsed)[3].status, "5.7.1");  // from the diagnostic when Status is missing
  EXPECT_EQ((*parsed)[3].kind, Kind::kHardBounce);
  for (const Feedback& f : *parsed) EXPECT_EQ(f.message_id, "m@acme.test");
}

TEST(Dsn, EximGenericStatusIsRefinedByTheDiagnostic) {
  auto parsed = ParseReport(ReadSample("exim_bounce.eml"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().status, "5.1.1");
  auto generic = ParseReport(
      Dsn("Final-Recipient: rfc822; a@example.com\r\nAction: failed\r\nStatus: 5.0.0\r\n"
          "Diagnostic-Code: smtp; 450 4.2.0 try later\r\n"));
  ASSERT_TRUE(generic);
  EXPECT_EQ(generic->front().status, "5.0.0");  // a code of another class does not replace it
}

TEST(Dsn, TruncatedReportStillParses) {
  std::string raw = ReadSample("postfix_bounce.eml");
  raw.resize(raw.find("Subject: =?UTF-8?Q?Welcome"));  // cut inside the returned message
  auto parsed = ParseReport(raw);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().recipient, "no.such.user@example.com");
  EXPECT_EQ(parsed->front().kind, Kind::kHardBounce);
  EXPECT_EQ(parsed->front().message_id, "");  // the Message-ID was after the cut
}

TEST(TextBounce, EximListWithTwoRecipients) {
  const std::string raw = ReadSample("exim_text_bounce.eml");
  for (const std::string& text : {raw, SwapLineEnds(raw)}) {
    auto parsed = ParseReport(text);
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    ASSERT_EQ(parsed->size(), 2u);
    const Feedback& first = (*parsed)[0];
    EXPECT_EQ(first.recipient, "old.address@legacy.example.com");
    EXPECT_EQ(first.kind, Kind::kHardBounce);  // "retry timeout exceeded"
    EXPECT_EQ(first.status, "");               // no code is given for it
    EXPECT_EQ(first.diagnostic, "retry timeout exceeded");
    const Feedback& second = (*parsed)[1];
    EXPECT_EQ(second.recipient, "closed.box@legacy.example.com");
    EXPECT_EQ(second.kind, Kind::kHardBounce);
    EXPECT_EQ(second.status, "5.2.1");
    for (const Feedback& f : *parsed) {
      EXPECT_EQ(f.source, "text");
      EXPECT_EQ(f.message_id, "01HS6Z9X8C7V6B5N4M3L2K1J0H.newsletter@acme.test");
    }
  }
}

TEST(TextBounce, QmailDiagnostic) {
  auto parsed = ParseReport(ReadSample("qmail_bounce.eml"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().diagnostic, "Sorry, no mailbox here by this name. (#5.1.1)");
}

TEST(TextBounce, SendmailStyleAndDelayWording) {
  const std::string sendmail =
      "From: Mail Delivery Subsystem <MAILER-DAEMON@old.example.com>\n"
      "To: bounces@acme.test\n"
      "Subject: Warning: could not send message for past 4 hours\n"
      "\n"
      "    **********************************************\n"
      "    **      THIS IS A WARNING MESSAGE ONLY      **\n"
      "    **********************************************\n"
      "\n"
      "The original message was received at Mon, 1 Apr 2024 08:00:00 GMT\n"
      "\n"
      "   ----- The following addresses had transient non-fatal errors -----\n"
      "<slow@old.example.com>\n"
      "    (expanded from: <slow@old.example.com>)\n"
      "\n"
      "   ----- Transcript of session follows -----\n"
      "<slow@old.example.com>... Deferred: Connection timed out with mx.old.example.com.\n"
      "Warning: message still undelivered after 4 hours\n"
      "Will keep trying until message is 5 days old\n";
  auto parsed = ParseReport(sendmail);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->front().recipient, "slow@old.example.com");
  EXPECT_EQ(parsed->front().kind, Kind::kSoftBounce);
  EXPECT_EQ(parsed->front().subtype, "delayed");
}

TEST(TextBounce, GenericNoticeUsesTheReturnedRecipients) {
  const std::string notice =
      "From: postmaster@small.example\n"
      "To: bounces@acme.test\n"
      "Subject: Undeliverable: Hello\n"
      "\n"
      "Your message to anna@small.example could not be delivered.\n"
      "Please contact postmaster@small.example for help.\n"
      "\n"
      "----- Original message -----\n"
      "From: hello@acme.test\n"
      "To: Anna <anna@small.example>\n"
      "Message-ID: <generic-1@acme.test>\n"
      "\n"
      "Hello\n";
  auto parsed = ParseReport(notice);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->front().recipient, "anna@small.example");
  // "could not be delivered", with no code and no word saying why: counted, not suppressed.
  EXPECT_EQ(parsed->front().kind, Kind::kSoftBounce);
  EXPECT_EQ(parsed->front().subtype, "failed");
  EXPECT_EQ(parsed->front().message_id, "generic-1@acme.test");
}

TEST(TextBounce, DragonFlyStyleWithHeadersFollowing) {
  const std::string notice =
      "From: MAILER-DAEMON <>\n"
      "To: bounces@acme.test\n"
      "Subject: Mail delivery failed\n"
      "\n"
      "This is the DragonFly Mail Agent v0.13 at relay.acme.test.\n"
      "\n"
      "There was an error delivering your mail to <Someone@Gmail.example>.\n"
      "\n"
      "gmail-smtp-in.l.google.example [192.0.2.27] did not like our RCPT TO:\n"
      "550-5.1.1 The email account that you tried to reach does not exist.\n"
      "550 5.1.1 https://support.google.example/mail/?p=NoSuchUser - gsmtp\n"
      "\n"
      "Message headers follow.\n"
      "\n"
      "Subject: Hello\n"
      "To: <someone@gmail.example>\n"
      "Message-Id: <dfly-1@acme.test>\n"
      "From: <hello@acme.test>\n";
  auto parsed = ParseReport(notice);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->front().recipient, "someone@gmail.example");
  EXPECT_EQ(parsed->front().status, "5.1.1");
  EXPECT_EQ(parsed->front().kind, Kind::kHardBounce);
  EXPECT_EQ(parsed->front().message_id, "dfly-1@acme.test");
}

TEST(Report, OldMacLineEnds) {
  std::string raw = ReadSample("postfix_bounce.eml");
  for (char& c : raw) {
    if (c == '\n') c = '\r';
  }
  auto parsed = ParseReport(raw);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->front().recipient, "no.such.user@example.com");
  EXPECT_EQ(parsed->front().message_id, "01HS3XQ7W8E9R0T1Y2U3I4O5P6.welcome-1@acme.test");
}

TEST(Report, NotABounce) {
  auto autoreply = ParseReport(ReadSample("autoreply.eml"));
  ASSERT_FALSE(autoreply);
  EXPECT_EQ(autoreply.error().code(), Code::kInvalidArgument);
  for (const std::string& junk : {std::string(), std::string("\r\n\r\n"),
                                  std::string("From: MAILER-DAEMON@x.example\n\nno address here"),
                                  std::string(1000, '\0'), std::string("--\n--\n:\n")}) {
    auto parsed = ParseReport(junk);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code(), Code::kInvalidArgument);
  }
}

TEST(Report, TooLarge) {
  ReportLimits limits;
  limits.max_message_bytes = 100;
  auto parsed = ParseReport(std::string(101, 'x'), limits);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code(), Code::kTooLarge);
}

TEST(Report, MaxRecipients) {
  std::string body;
  for (int i = 0; i < 50; ++i) {
    body += "Final-Recipient: rfc822; r" + std::to_string(i) +
            "@example.com\r\nAction: failed\r\n"
            "Status: 5.1.1\r\n\r\n";
  }
  ReportLimits limits;
  limits.max_recipients = 7;
  auto parsed = ParseReport(Dsn(body), limits);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->size(), 7u);
}

TEST(Report, LargeTextBounceStaysBounded) {
  std::string failed;
  std::string notice;
  for (int i = 0; i < 3000; ++i) {
    const std::string a = "user" + std::to_string(i) + "@example.com";
    failed += (i ? ", " : "") + a;
    notice += "<" + a + ">: 550 5.1.1 no such user here, and some more words to make it long\n";
  }
  const std::string message = "From: MAILER-DAEMON@mx.example.net\nX-Failed-Recipients: " + failed +
                              "\nSubject: failure notice\n\n" + notice + notice;
  auto parsed = ParseReport(message);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->size(), ReportLimits().max_recipients);
  EXPECT_EQ(parsed->back().status, "5.1.1");
}

TEST(Report, OutputIsCleanWhateverTheInput) {
  auto parsed = ParseReport(
      Dsn("Final-Recipient: rfc822; a@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
          "Diagnostic-Code: smtp; 550 bad \xFF\xFE bytes \x01 and\ttabs\r\n",
          "Message-ID: <id\x01@x>\r\n"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->front().diagnostic, "550 bad \xEF\xBF\xBD\xEF\xBF\xBD bytes and tabs");
  EXPECT_EQ(parsed->front().message_id, "");
}

TEST(Helpers, ExtractStatusCode) {
  EXPECT_EQ(ExtractStatusCode("550 5.1.1 <a@b>: User unknown"), "5.1.1");
  EXPECT_EQ(ExtractStatusCode("Sorry, no mailbox here by this name. (#5.1.1)"), "5.1.1");
  EXPECT_EQ(ExtractStatusCode("RESOLVER.ADR.RecipNotFound; #550 5.1.10 not found ##"), "5.1.10");
  EXPECT_EQ(ExtractStatusCode("host [192.0.2.1] said: 452 too many"), "4.0.0");
  EXPECT_EQ(ExtractStatusCode("550-Mailbox unavailable"), "5.0.0");
  EXPECT_EQ(ExtractStatusCode("Exim 4.94.2 at 10.5.1.1 in 450 days"), "");
  EXPECT_EQ(ExtractStatusCode("version 5.1.1.4"), "");
  EXPECT_EQ(ExtractStatusCode("failed with 5.7.1."), "5.7.1");
  EXPECT_EQ(ExtractStatusCode(""), "");
}

TEST(Helpers, NormalizeRecipientAndMessageId) {
  EXPECT_EQ(NormalizeRecipient("  John Doe <John.Doe@Example.COM> "), "john.doe@example.com");
  EXPECT_EQ(NormalizeRecipient("a@b"), "a@b");
  EXPECT_EQ(NormalizeRecipient("no at sign"), "");
  EXPECT_EQ(NormalizeRecipient("two words@example.com"), "");
  EXPECT_EQ(NormalizeRecipient("a@b@c"), "");
  EXPECT_EQ(NormalizeRecipient(std::string(300, 'a') + "@example.com"), "");
  EXPECT_EQ(NormalizeRecipient("\xFF@example.com"), "");
  EXPECT_EQ(NormalizeMessageId(" <abc@def> (comment)"), "abc@def");
  EXPECT_EQ(NormalizeMessageId("bare@id trailing"), "bare@id");
  EXPECT_EQ(NormalizeMessageId("<folded\r\n @id>"), "folded@id");
  EXPECT_EQ(NormalizeMessageId("<>"), "");
  EXPECT_EQ(NormalizeMessageId(""), "");
}

TEST(Helpers, KindNamesAndStatusKinds) {
  EXPECT_EQ(FeedbackKindName(Kind::kHardBounce), "hard_bounce");
  EXPECT_EQ(FeedbackKindName(Kind::kSoftBounce), "soft_bounce");
  EXPECT_EQ(FeedbackKindName(Kind::kComplaint), "complaint");
  EXPECT_EQ(FeedbackKindName(Kind::kDelivered), "delivered");
  EXPECT_EQ(FeedbackKindName(Kind::kUnknown), "unknown");
  EXPECT_EQ(KindForStatus("5.1.1"), Kind::kHardBounce);
  EXPECT_EQ(KindForStatus("5.2.2"), Kind::kSoftBounce);
  EXPECT_EQ(KindForStatus("4.4.1"), Kind::kSoftBounce);
  EXPECT_EQ(KindForStatus("2.0.0"), Kind::kDelivered);
  EXPECT_EQ(KindForStatus(""), Kind::kUnknown);
}

}  // namespace
}  // namespace nudge::channel
