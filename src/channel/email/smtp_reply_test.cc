#include "channel/email/smtp_reply.h"

#include <gtest/gtest.h>

namespace nudge::channel {
namespace {

TEST(SmtpReply, MultiLineEhloWithCapabilities) {
  auto r = ParseSmtpReply(
      "250-mail.example.net Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
      "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->code, 250);
  EXPECT_EQ(r->lines.size(), 7u);
  const EhloCapabilities caps = ParseEhlo(*r);
  EXPECT_TRUE(caps.esmtp);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.enhanced_status_codes);
  EXPECT_TRUE(caps.eight_bit_mime);
  EXPECT_FALSE(caps.smtputf8);
  ASSERT_TRUE(caps.size);
  EXPECT_EQ(*caps.size, 10240000u);
  EXPECT_TRUE(caps.HasAuth("plain"));
  EXPECT_TRUE(caps.HasAuth("LOGIN"));
  EXPECT_FALSE(caps.HasAuth("CRAM-MD5"));
}

TEST(SmtpReply, OldStyleAuthEqualsAndNoSizeValue) {
  auto r = ParseSmtpReply("250-x\r\n250-AUTH=LOGIN\r\n250 SIZE\r\n");
  ASSERT_TRUE(r);
  const EhloCapabilities caps = ParseEhlo(*r);
  EXPECT_TRUE(caps.HasAuth("LOGIN"));
  ASSERT_TRUE(caps.size);
  EXPECT_EQ(*caps.size, 0u);
}

TEST(SmtpReply, EnhancedCodesAreSplitFromTheText) {
  auto sent = ParseSmtpReply("250 2.0.0 Ok: queued as 4BF2A1C0E\r\n");
  ASSERT_TRUE(sent);
  EXPECT_EQ(sent->enhanced, "2.0.0");
  EXPECT_EQ(sent->Text(), "Ok: queued as 4BF2A1C0E");
  EXPECT_EQ(sent->ToString(), "250 2.0.0 Ok: queued as 4BF2A1C0E");

  auto bounce = ParseSmtpReply(
      "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
      "550 5.1.1 https://support.example/?p=NoSuchUser\r\n");
  ASSERT_TRUE(bounce);
  EXPECT_TRUE(bounce->permanent());
  EXPECT_EQ(bounce->enhanced, "5.1.1");
  EXPECT_EQ(bounce->Text(),
            "The email account that you tried to reach does not exist. "
            "https://support.example/?p=NoSuchUser");

  // A class that does not match the reply's is not an enhanced code.
  auto odd = ParseSmtpReply("451 5.0.0 hmm\r\n");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->enhanced, "");
  EXPECT_TRUE(odd->transient());
  // Bare code, bare LF.
  auto bare = ParseSmtpReply("354\n");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->code, 354);
  EXPECT_EQ(bare->Text(), "");
}

TEST(SmtpReply, ReaderWaitsForTheFinalLineAcrossReads) {
  SmtpReplyReader reader;
  reader.Feed("250-first\r\n250-sec");
  auto r = reader.Next();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  reader.Feed("ond\r\n250 last\r\n354 go ahead\r\n");
  r = reader.Next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->lines, (std::vector<std::string>{"first", "second", "last"}));
  r = reader.Next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->code, 354);
  EXPECT_EQ(reader.buffered(), 0u);
  r = reader.Next();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

TEST(SmtpReply, MalformedInputIsAnErrorNotACrash) {
  EXPECT_FALSE(ParseSmtpReply("hello\r\n"));
  EXPECT_FALSE(ParseSmtpReply("25\r\n"));
  EXPECT_FALSE(ParseSmtpReply("999 no\r\n"));
  EXPECT_FALSE(ParseSmtpReply("250xno\r\n"));
  EXPECT_FALSE(ParseSmtpReply("250-a\r\n251 b\r\n"));  // the code changed mid-reply
  EXPECT_FALSE(ParseSmtpReply("250-a\r\n"));           // no final line
  EXPECT_FALSE(ParseSmtpReply("250 a\r\n250 b\r\n"));  // two replies
  SmtpReplyReader reader;
  reader.Feed(std::string(SmtpReplyReader::kMaxLine + 10, '2'));
  EXPECT_FALSE(reader.Next());
  SmtpReplyReader many;
  std::string lines;
  for (size_t i = 0; i <= SmtpReplyReader::kMaxLines; ++i) lines += "250-x\r\n";
  many.Feed(lines + "250 end\r\n");
  EXPECT_FALSE(many.Next());
}

}  // namespace
}  // namespace nudge::channel
