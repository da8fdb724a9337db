#include "content/text.h"

#include <gtest/gtest.h>

namespace nudge::content {
namespace {

TEST(HtmlToText, ParagraphsListsLinksAndEntities) {
  const std::string html =
      "<html><head><title>T</title><style>p{color:red}</style></head><body>"
      "<div style=\"display:none\">hidden preheader</div>"
      "<h1>Hello&nbsp;Ann</h1><p>Prices &amp; plans:<br>see <a "
      "href=\"https://acme.test/p?a=1&amp;b=2\">"
      "our pricing</a>.</p><ul><li>One</li><li>Two</li></ul><ol><li>First</li><li>Second</li></ol>"
      "<p><a href=\"https://acme.test/\">https://acme.test/</a> &copy; 2026</p>"
      "<!-- a comment --><script>alert(1)</script></body></html>";
  EXPECT_EQ(HtmlToText(html),
            "Hello Ann\n\nPrices & plans:\nsee our pricing (https://acme.test/p?a=1&b=2).\n\n"
            "- One\n- Two\n\n1. First\n2. Second\n\nhttps://acme.test/ \xC2\xA9 2026\n");
}

TEST(HtmlToText, CollapsesWhitespaceAndKeepsPre) {
  EXPECT_EQ(HtmlToText("  a \n\n b\t<b>c</b>  "), "a b c\n");
  EXPECT_EQ(HtmlToText("<pre>x  y\n  z</pre>"), "x  y\n  z\n");
  EXPECT_EQ(HtmlToText(""), "");
  EXPECT_EQ(HtmlToText("<p>unclosed <a href='mailto:x@y.z'>mail us"), "unclosed mail us\n");
}

TEST(MeasureSms, Gsm7AndUcs2Segments) {
  EXPECT_EQ(MeasureSms("").segments, 0);
  SmsSize s = MeasureSms(std::string(160, 'a'));
  EXPECT_FALSE(s.unicode);
  EXPECT_EQ(s.segments, 1);
  EXPECT_EQ(MeasureSms(std::string(161, 'a')).segments, 2);
  EXPECT_EQ(MeasureSms(std::string(306, 'a')).segments, 2);
  EXPECT_EQ(MeasureSms(std::string(307, 'a')).segments, 3);
  // Extension characters count two septets.
  s = MeasureSms(std::string(80, '{'));
  EXPECT_EQ(s.units, 160u);
  EXPECT_EQ(s.segments, 1);
  EXPECT_EQ(MeasureSms("Caf\xC3\xA9 \xC3\xBC\xC3\xB1 \xE2\x82\xAC").unicode, false);  // é ü ñ €
  // One emoji forces UCS-2; it takes two UTF-16 units.
  s = MeasureSms("Hi \xF0\x9F\x91\x8B");
  EXPECT_TRUE(s.unicode);
  EXPECT_EQ(s.units, 5u);
  EXPECT_STREQ(s.encoding(), "UCS-2");
  EXPECT_EQ(MeasureSms(std::string(70, 'a') + "\xC4\x8D").segments, 2);  // 71 units: č
}

}  // namespace
}  // namespace nudge::content
