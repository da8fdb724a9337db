#include "channel/feedback/mime.h"

#include <gtest/gtest.h>

#include <string>

namespace nudge::channel {
namespace {

TEST(MimeFields, UnfoldsAndStopsAtTheEmptyLine) {
  std::vector<MimeField> fields;
  const std::string text =
      "From MAILER-DAEMON Tue Mar 12 09:14:02 2024\n"
      "Subject: first\r\n"
      "  second\r\n"
      "\tthird\r\n"
      "X-Empty:\r\n"
      "Content-Type : text/plain\r\n"
      "\r\n"
      "Body: not a header\r\n";
  const size_t body = ParseMimeFields(text, fields);
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].name, "Subject");
  EXPECT_EQ(fields[0].value, "first second third");
  EXPECT_EQ(fields[1].value, "");
  EXPECT_EQ(FindField(fields, "content-type"), "text/plain");
  EXPECT_EQ(text.substr(body), "Body: not a header\r\n");
}

TEST(MimeFields, ALineThatIsNoFieldStartsTheBody) {
  std::vector<MimeField> fields;
  const std::string text = "Subject: x\nthis is prose\nTo: y\n";
  const size_t body = ParseMimeFields(text, fields);
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(text.substr(body), "this is prose\nTo: y\n");
}

TEST(MimeFields, KeepsAtMostMaxFields) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "X-" + std::to_string(i) + ": v\n continued\n";
  text += "\nbody";
  std::vector<MimeField> fields;
  const size_t body = ParseMimeFields(text, fields, 10);
  EXPECT_EQ(fields.size(), 10u);
  EXPECT_EQ(fields[9].value, "v continued");
  EXPECT_EQ(text.substr(body), "body");
}

TEST(ContentType, TypeAndParametersWithQuotesAndComments) {
  std::vector<std::pair<std::string, std::string>> params;
  EXPECT_EQ(ParseContentType("Multipart/Report (a comment; with=semicolon); "
                             "Report-Type=delivery-status; boundary=\"a;b \\\"c\\\"\"",
                             params),
            "multipart/report");
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "report-type");
  EXPECT_EQ(params[0].second, "delivery-status");
  EXPECT_EQ(params[1].second, "a;b \"c\"");
  params.clear();
  EXPECT_EQ(ParseContentType("text", params), "");
  EXPECT_EQ(ParseContentType("", params), "");
}

TEST(TransferEncodings, Base64AndQuotedPrintable) {
  EXPECT_EQ(DecodeBase64("SGVsbG8s\r\nIHdvcmxk\nIQ=="), "Hello, world!");
  EXPECT_EQ(DecodeBase64("SGk=SGk="), "HiHi");  // concatenated encoded blocks
  EXPECT_EQ(DecodeBase64("!!!"), "");
  EXPECT_EQ(DecodeQuotedPrintable("caf=C3=A9 =3D soft=\r\nbreak=  \nend =ZZ ="),
            "caf\xC3\xA9 = softbreakend =ZZ ");
}

TEST(HeaderWords, DecodesEncodedWords) {
  EXPECT_EQ(DecodeHeaderWords("=?UTF-8?Q?Undeliverable=3A_caf=C3=A9?= =?utf-8?B?IQ==?= end"),
            "Undeliverable: caf\xC3\xA9! end");
  EXPECT_EQ(DecodeHeaderWords("=?iso-8859-1?q?r=E9sum=E9?="), "r\xC3\xA9sum\xC3\xA9");
  EXPECT_EQ(DecodeHeaderWords("plain =?broken"), "plain =?broken");
}

TEST(MimeTree, NestedMultipartsEncodingsAndEnclosedMessage) {
  const std::string message =
      "Content-Type: multipart/mixed; boundary=outer\n"
      "\n"
      "preamble\n"
      "--outer\n"
      "Content-Type: multipart/alternative; boundary=\"inner\"\n"
      "\n"
      "--inner\n"
      "Content-Type: text/plain\n"
      "Content-Transfer-Encoding: quoted-printable\n"
      "\n"
      "a=3Db\n"
      "--inner\n"
      "Content-Type: text/html\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "PHA+aGk8L3A+\n"
      "--inner--\n"
      "--outerNOT a boundary\n"
      "--outer\n"
      "Content-Type: message/rfc822\n"
      "\n"
      "Message-ID: <x@y>\n"
      "Subject: inside\n"
      "\n"
      "enclosed body\n"
      "--outer--\n"
      "epilogue\n";
  const MimeTree tree = ParseMimeTree(message);
  EXPECT_FALSE(tree.truncated);
  const MimeNode& root = tree.root;
  EXPECT_EQ(root.type, "multipart/mixed");
  ASSERT_EQ(root.children.size(), 2u);
  const MimeNode& alt = root.children[0];
  ASSERT_EQ(alt.children.size(), 2u);
  EXPECT_EQ(alt.children[0].body, "a=b");
  EXPECT_EQ(alt.children[1].type, "text/html");
  EXPECT_EQ(alt.children[1].body, "<p>hi</p>");
  const MimeNode& enclosed = root.children[1];
  EXPECT_EQ(enclosed.type, "message/rfc822");
  ASSERT_EQ(enclosed.children.size(), 1u);
  EXPECT_EQ(enclosed.children[0].Header("message-id"), "<x@y>");
  EXPECT_EQ(enclosed.children[0].body, "enclosed body");
}

TEST(MimeTree, MissingCloseDelimiterKeepsTheLastPart) {
  const MimeTree tree = ParseMimeTree(
      "Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\n"
      "Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <cut@off>\r\nSubj");
  ASSERT_EQ(tree.root.children.size(), 2u);
  EXPECT_EQ(tree.root.children[0].body, "first");
  EXPECT_EQ(tree.root.children[1].type, "text/rfc822-headers");
  EXPECT_EQ(tree.root.children[1].body, "Message-ID: <cut@off>\r\nSubj");
}

TEST(MimeTree, MultipartWithoutBoundaryKeepsItsBody) {
  const MimeTree tree = ParseMimeTree("Content-Type: multipart/mixed\n\nsome text\n");
  EXPECT_TRUE(tree.root.children.empty());
  EXPECT_EQ(tree.root.body, "some text\n");
}

TEST(MimeTree, DigestPartsDefaultToMessages) {
  const MimeTree tree = ParseMimeTree(
      "Content-Type: multipart/digest; boundary=d\n\n--d\n\nMessage-ID: <a@b>\n\nhi\n--d--\n");
  ASSERT_EQ(tree.root.children.size(), 1u);
  EXPECT_EQ(tree.root.children[0].type, "message/rfc822");
  ASSERT_EQ(tree.root.children[0].children.size(), 1u);
  EXPECT_EQ(tree.root.children[0].children[0].Header("Message-ID"), "<a@b>");
}

TEST(MimeTree, DepthAndPartLimits) {
  std::string deep;
  for (int i = 0; i < 50; ++i) deep += "Content-Type: message/rfc822\n\n";
  deep += "Subject: bottom\n\nbody";
  MimeParseLimits limits;
  limits.max_depth = 5;
  const MimeTree tree = ParseMimeTree(deep, limits);
  EXPECT_TRUE(tree.truncated);
  const MimeNode* node = &tree.root;
  int depth = 0;
  while (!node->children.empty()) {
    node = &node->children[0];
    ++depth;
  }
  EXPECT_EQ(depth, 5);

  std::string many = "Content-Type: multipart/mixed; boundary=m\n\n";
  for (int i = 0; i < 100; ++i) many += "--m\n\npart\n";
  limits.max_parts = 11;
  const MimeTree wide = ParseMimeTree(many, limits);
  EXPECT_TRUE(wide.truncated);
  EXPECT_EQ(wide.root.children.size(), 10u);
}

}  // namespace
}  // namespace nudge::channel
