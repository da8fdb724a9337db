#include "channel/email/message.h"

#include <gtest/gtest.h>

#include "channel/email/internal/mime.h"
#include "core/crypto.h"
#include "core/json.h"

namespace nudge::channel {
namespace {

// 2026-03-05T09:07:03Z
constexpr core::Millis kNow = 1772701623000;

EmailContent Sample() {
  EmailContent c;
  c.from = {"Acme", "hello@acme.test"};
  c.to = {"Jürgen Müller", "juergen@example.de"};
  c.subject = "Welcome aboard";
  c.text = "Hi Jürgen,\nthanks for signing up.\n";
  c.html = "<html><body><p>Hi J&uuml;rgen</p></body></html>";
  c.message_id = "m1.abc@acme.test";
  c.headers = {{"List-Unsubscribe", "<https://acme.test/u/abc>, <mailto:u+abc@acme.test>"},
               {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
               {"Feedback-ID", "welcome:journey1:acme"}};
  return c;
}

std::vector<std::string> Lines(const std::string& msg) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    if (eol == std::string::npos) eol = msg.size();
    lines.push_back(msg.substr(pos, eol - pos));
    pos = eol + 2;
  }
  return lines;
}

std::string Header(const std::string& msg, const std::string& name) {
  // Unfolded value of the first header with this name.
  const std::string head = msg.substr(0, msg.find("\r\n\r\n") + 2);
  size_t at = head.find("\r\n" + name + ":");
  if (head.rfind(name + ":", 0) == 0)
    at = 0;
  else if (at == std::string::npos)
    return "";
  else
    at += 2;
  size_t end = at;
  while (true) {
    end = head.find("\r\n", end);
    if (end + 2 >= head.size() || (head[end + 2] != ' ' && head[end + 2] != '\t')) break;
    end += 2;
  }
  std::string value = head.substr(at + name.size() + 1, end - at - name.size() - 1);
  std::string unfolded;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value.compare(i, 2, "\r\n") == 0) {
      ++i;
      continue;
    }
    unfolded += value[i];
  }
  return unfolded.substr(unfolded.find_first_not_of(' '));
}

// Decodes RFC 2047 encoded-words (whitespace between adjacent words dropped).
std::string DecodeWords(const std::string& value) {
  std::string out;
  size_t i = 0;
  bool last_was_word = false;
  std::string pending_space;
  while (i < value.size()) {
    if (value.compare(i, 2, "=?") == 0) {
      const size_t q1 = value.find('?', i + 2), q2 = value.find('?', q1 + 1),
                   end = value.find("?=", q2 + 1);
      const char enc = value[q1 + 1];
      const std::string data = value.substr(q2 + 1, end - q2 - 1);
      if (!last_was_word) out += pending_space;
      pending_space.clear();
      if (enc == 'B' || enc == 'b') {
        out += core::Base64Decode(data).value_or("<bad base64>");
      } else {
        for (size_t k = 0; k < data.size(); ++k) {
          if (data[k] == '_') {
            out += ' ';
          } else if (data[k] == '=') {
            out += static_cast<char>(std::stoi(data.substr(k + 1, 2), nullptr, 16));
            k += 2;
          } else {
            out += data[k];
          }
        }
      }
      i = end + 2;
      last_was_word = true;
    } else if (value[i] == ' ') {
      pending_space += ' ';
      ++i;
    } else {
      out += pending_space;
      pending_space.clear();
      out += value[i++];
      last_was_word = false;
    }
  }
  return out;
}

std::string DecodeQuotedPrintable(const std::string& qp) {
  std::string out;
  for (size_t i = 0; i < qp.size(); ++i) {
    if (qp[i] == '=') {
      if (qp.compare(i + 1, 2, "\r\n") == 0) {
        i += 2;
      } else {
        out += static_cast<char>(std::stoi(qp.substr(i + 1, 2), nullptr, 16));
        i += 2;
      }
    } else {
      out += qp[i];
    }
  }
  return out;
}

TEST(BuildMessage, MultipartAlternativeWithTextFirstAndCrlfEverywhere) {
  core::VirtualClock clock(kNow);
  auto msg = BuildMessage(Sample(), clock);
  ASSERT_TRUE(msg) << msg.error().ToString();
  for (size_t i = 0; i < msg->size(); ++i) {
    if ((*msg)[i] == '\n') {
      ASSERT_TRUE(i > 0 && (*msg)[i - 1] == '\r') << "bare LF at " << i;
    }
    if ((*msg)[i] == '\r') {
      ASSERT_TRUE(i + 1 < msg->size() && (*msg)[i + 1] == '\n');
    }
  }
  for (const std::string& line : Lines(*msg)) EXPECT_LE(line.size(), 998u);

  EXPECT_EQ(Header(*msg, "Date"), "Thu, 05 Mar 2026 09:07:03 +0000");
  EXPECT_EQ(Header(*msg, "Message-ID"), "<m1.abc@acme.test>");
  EXPECT_EQ(Header(*msg, "MIME-Version"), "1.0");
  EXPECT_EQ(Header(*msg, "From"), "Acme <hello@acme.test>");
  EXPECT_EQ(Header(*msg, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
  EXPECT_EQ(Header(*msg, "List-Unsubscribe"),
            "<https://acme.test/u/abc>, <mailto:u+abc@acme.test>");
  const std::string type = Header(*msg, "Content-Type");
  ASSERT_EQ(type.rfind("multipart/alternative; boundary=\"", 0), 0u) << type;
  EXPECT_NE(msg->find("Content-Type: multipart/alternative;\r\n boundary="), std::string::npos);
  const std::string boundary =
      type.substr(type.find('"') + 1, type.rfind('"') - type.find('"') - 1);
  const size_t first = msg->find("\r\n--" + boundary + "\r\n");
  const size_t second = msg->find("\r\n--" + boundary + "\r\n", first + 1);
  const size_t close = msg->find("\r\n--" + boundary + "--\r\n");
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  ASSERT_NE(close, std::string::npos);
  EXPECT_LT(first, second);
  EXPECT_LT(second, close);
  EXPECT_EQ(close + boundary.size() + 8, msg->size());  // nothing after the close delimiter
  const size_t plain = msg->find("Content-Type: text/plain; charset=utf-8");
  const size_t html = msg->find("Content-Type: text/html; charset=utf-8");
  EXPECT_LT(first, plain);
  EXPECT_LT(plain, second);
  EXPECT_LT(second, html);
  // The text has an umlaut: quoted-printable, and it decodes back.
  const std::string text_part = msg->substr(plain, second - plain);
  EXPECT_NE(text_part.find("Content-Transfer-Encoding: quoted-printable"), std::string::npos);
  const std::string body = text_part.substr(text_part.find("\r\n\r\n") + 4);
  // The CRLF before the boundary belongs to the delimiter (RFC 2046 §5.1.1).
  EXPECT_EQ(DecodeQuotedPrintable(body), "Hi Jürgen,\r\nthanks for signing up.");
  // The HTML is plain ASCII in short lines: 7bit.
  EXPECT_NE(msg->find("Content-Transfer-Encoding: 7bit", second), std::string::npos);
}

TEST(BuildMessage, SamePartsAndIdGiveTheSameBytes) {
  core::VirtualClock clock(kNow);
  EXPECT_EQ(*BuildMessage(Sample(), clock), *BuildMessage(Sample(), clock));
  EmailContent other = Sample();
  other.message_id = "m2@acme.test";
  const std::string a = *BuildMessage(Sample(), clock), b = *BuildMessage(other, clock);
  EXPECT_NE(Header(a, "Content-Type"), Header(b, "Content-Type"));  // boundary from the id
}

TEST(BuildMessage, Utf8DisplayNamesAndSubjectsAreEncodedWords) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.subject = "Grüße aus München – 20 % Rabatt für dich";
  c.reply_to = Mailbox{"Support, Acme", "support@acme.test"};
  auto msg = BuildMessage(c, clock);
  ASSERT_TRUE(msg) << msg.error().ToString();
  const std::string head = msg->substr(0, msg->find("\r\n\r\n"));
  for (unsigned char ch : head) {
    ASSERT_LT(ch, 0x80) << "raw non-ASCII in the header";
  }
  const std::string to = Header(*msg, "To");
  EXPECT_EQ(to.rfind("=?UTF-8?", 0), 0u) << to;
  EXPECT_EQ(DecodeWords(to), "Jürgen Müller <juergen@example.de>");
  EXPECT_EQ(DecodeWords(Header(*msg, "Subject")), c.subject);
  EXPECT_EQ(Header(*msg, "Reply-To"), "\"Support, Acme\" <support@acme.test>");
}

TEST(BuildMessage, LongHeadersAreFoldedAndUnfoldBackExactly) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.subject =
      "Your weekly digest: twelve new integrations, three webinars, a pricing update and a "
      "note from the founders about what comes next for everyone";
  c.headers.emplace_back("X-Campaign", "spring sale " + std::string(120, 'x') + " end");
  std::string cyrillic;
  for (int i = 0; i < 12; ++i) cyrillic += "Привет мир ";
  EmailContent c2 = Sample();
  c2.subject = cyrillic;
  for (const EmailContent& content : {c, c2}) {
    auto msg = BuildMessage(content, clock);
    ASSERT_TRUE(msg) << msg.error().ToString();
    const std::string head = msg->substr(0, msg->find("\r\n\r\n") + 2);
    for (const std::string& line : Lines(head)) {
      if (line.find("xxxxxxxx") != std::string::npos) continue;  // one long word: cannot fold
      EXPECT_LE(line.size(), 78u) << line;
    }
    EXPECT_EQ(DecodeWords(Header(*msg, "Subject")), content.subject);
  }
  auto msg = BuildMessage(c, clock);
  EXPECT_EQ(Header(*msg, "X-Campaign"), "spring sale " + std::string(120, 'x') + " end");
  // The Cyrillic subject is mostly non-ASCII: base64 words are shorter than Q.
  EXPECT_NE(BuildMessage(c2, clock)->find("Subject: =?UTF-8?B?"), std::string::npos);
}

TEST(BuildMessage, EncodedWordsNeverSplitACharacter) {
  const std::string s = "ü€𝄞ß漢字かな" + std::string(50, 'a') + "ö";
  for (size_t first : {20, 40, 75}) {
    std::vector<std::string> words = EncodedWords(s, first);
    ASSERT_FALSE(words.empty());
    std::string joined;
    for (const std::string& w : words) {
      EXPECT_LE(w.size(), 75u);
      joined += w + " ";
      EXPECT_TRUE(core::IsValidUtf8(DecodeWords(w))) << w;
    }
    EXPECT_LE(words[0].size(), std::max<size_t>(first, 24));
    EXPECT_EQ(DecodeWords(joined.substr(0, joined.size() - 1)), s);
  }
}

TEST(BuildMessage, QuotedPrintableLinesAndEscapes) {
  const std::string text = NormalizeLineEndings("Price = 10 € \n" + std::string(200, 'a') +
                                                "\nFrom here on\n.dot line\ntrailing tab\t\n");
  const std::string qp = QuotedPrintable(text);
  for (const std::string& line : Lines(qp)) EXPECT_LE(line.size(), 76u) << line;
  EXPECT_NE(qp.find("Price =3D 10 =E2=82=AC=20\r\n"), std::string::npos) << qp;
  EXPECT_NE(qp.find("=46rom here on"), std::string::npos);
  EXPECT_NE(qp.find("trailing tab=09\r\n"), std::string::npos);
  EXPECT_EQ(DecodeQuotedPrintable(qp), text);
}

TEST(BuildMessage, MostlyNonAsciiBodiesUseBase64) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.html.clear();
  c.text = "こんにちは、ようこそ。ご登録ありがとうございます。";
  auto msg = BuildMessage(c, clock);
  ASSERT_TRUE(msg);
  EXPECT_EQ(Header(*msg, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(Header(*msg, "Content-Transfer-Encoding"), "base64");
  const std::string body = msg->substr(msg->find("\r\n\r\n") + 4);
  std::string b64;
  for (char ch : body)
    if (ch != '\r' && ch != '\n') b64 += ch;
  EXPECT_EQ(core::Base64Decode(b64).value_or(""), c.text);
  for (const std::string& line : Lines(body)) EXPECT_LE(line.size(), 76u);
}

TEST(BuildMessage, LongHtmlLinesAreNotSent7Bit) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.html = "<html><body>" + std::string(3000, 'x') + "</body></html>";
  auto msg = BuildMessage(c, clock);
  ASSERT_TRUE(msg);
  for (const std::string& line : Lines(*msg)) EXPECT_LE(line.size(), 998u);
  EXPECT_NE(msg->find("Content-Type: text/html; charset=utf-8\r\n"
                      "Content-Transfer-Encoding: quoted-printable"),
            std::string::npos);
}

TEST(BuildMessage, PreheaderGoesHiddenAfterTheBodyTag) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.text.clear();
  c.html = "<html><BODY class=\"x\"><p>Hi</p></BODY></html>";
  c.preheader = "Your <first> week & more";
  auto msg = BuildMessage(c, clock);
  ASSERT_TRUE(msg);
  const size_t body_tag = msg->find("<BODY class=\"x\">");
  const size_t hidden = msg->find("display:none");
  EXPECT_LT(body_tag, hidden);
  EXPECT_LT(hidden, msg->find("<p>Hi</p>"));
  EXPECT_NE(msg->find("Your &lt;first&gt; week &amp; more</div>"), std::string::npos);
}

TEST(BuildMessage, RefusesHeaderInjectionAndBadInput) {
  core::VirtualClock clock(kNow);
  EmailContent c = Sample();
  c.headers = {{"X-Tag", "a\r\nBcc: victim@example.com"}};
  auto r = BuildMessage(c, clock);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where(), "headers[0]");

  c = Sample();
  c.headers = {{"Subject", "second subject"}};
  EXPECT_EQ(BuildMessage(c, clock).error().where(), "headers[0]");
  c.headers = {{"Bad Name", "x"}};
  EXPECT_FALSE(BuildMessage(c, clock));

  c = Sample();
  c.to.address = "juergen@example.de\r\nBcc: x@y";
  EXPECT_EQ(BuildMessage(c, clock).error().where(), "to");
  c = Sample();
  c.to.name = "Eve\r\nBcc: x@y";
  EXPECT_EQ(BuildMessage(c, clock).error().where(), "to");
  c = Sample();
  c.subject = "bad \xC3";
  EXPECT_EQ(BuildMessage(c, clock).error().where(), "subject");
  c = Sample();
  c.message_id = "no-at-sign";
  EXPECT_EQ(BuildMessage(c, clock).error().where(), "message_id");
  c = Sample();
  c.text.clear();
  c.html.clear();
  EXPECT_FALSE(BuildMessage(c, clock));
}

TEST(Mailbox, ParsesTheUsualForms) {
  auto a = ParseMailbox("Acme <hello@acme.test>");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "Acme");
  EXPECT_EQ(a->address, "hello@acme.test");
  auto b = ParseMailbox("  \"Acme, Inc. \\\"EU\\\"\" <hello@acme.test> ");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "Acme, Inc. \"EU\"");
  auto c = ParseMailbox("hello@acme.test");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->name, "");
  EXPECT_FALSE(ParseMailbox("Acme <hello>"));
  EXPECT_FALSE(ParseMailbox("Acme <hello@acme.test"));
  EXPECT_FALSE(ParseMailbox("jürgen@example.de"));
  EXPECT_EQ(AddressDomain("User@Example.COM"), "example.com");
}

}  // namespace
}  // namespace nudge::channel
