#include "track/links.h"

#include <gtest/gtest.h>

#include "track/pages.h"

namespace nudge::track {
namespace {

TEST(Links, SignedClaimsRoundTripAndTamperingIsRefused) {
  LinkSigner signer("secret-1");
  LinkClaims c{LinkKind::kClick, 3, 42, 7, "email", "https://acme.test/pricing?a=1|b"};
  const std::string token = signer.Sign(c);
  auto back = signer.Verify(token);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->kind, LinkKind::kClick);
  EXPECT_EQ(back->workspace, 3);
  EXPECT_EQ(back->contact, 42);
  EXPECT_EQ(back->message, 7);
  EXPECT_EQ(back->extra, "https://acme.test/pricing?a=1|b");

  // Another secret, another contact, a changed URL: all refused.
  EXPECT_EQ(LinkSigner("secret-2").Verify(token).error().code(), Code::kPermissionDenied);
  c.extra = "https://evil.test/";
  const std::string forged =
      signer.Sign(c).substr(0, signer.Sign(c).find('.')) + token.substr(token.find('.'));
  EXPECT_EQ(signer.Verify(forged).error().code(), Code::kPermissionDenied);
  EXPECT_FALSE(signer.Verify("garbage"));
  EXPECT_FALSE(signer.Verify(""));
  EXPECT_EQ(LinkPath(signer, {LinkKind::kOpen, 1, 2, 3, "email", ""}).substr(0, 5), "/t/o/");
}

TEST(Links, OnlyAbsoluteHttpUrlsRedirect) {
  EXPECT_TRUE(IsRedirectable("https://acme.test/x?y=1"));
  EXPECT_TRUE(IsRedirectable("http://127.0.0.1:9000/"));
  EXPECT_FALSE(IsRedirectable("javascript:alert(1)"));
  EXPECT_FALSE(IsRedirectable("//evil.test/"));
  EXPECT_FALSE(IsRedirectable("https:///evil"));
  EXPECT_FALSE(IsRedirectable("https://a.test/\r\nSet-Cookie: x"));
  EXPECT_FALSE(IsRedirectable("data:text/html,hi"));
}

TEST(Pages, EscapeAndForms) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
  EXPECT_NE(UnsubscribeConfirmPage("<news>", "/t/u/x").find("&lt;news&gt;"), std::string::npos);
  auto form = ParseForm("on=email&on=email%2Fnews&all=off&x=a+b");
  ASSERT_EQ(form.size(), 4u);
  EXPECT_EQ(form[1].second, "email/news");
  EXPECT_EQ(form[3].second, "a b");
  EXPECT_EQ(TransparentGif().size(), 43u);
}

}  // namespace
}  // namespace nudge::track
