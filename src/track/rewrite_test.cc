#include "track/rewrite.h"

#include <gtest/gtest.h>

namespace nudge::track {
namespace {

TEST(Rewrite, HtmlLinksGoThroughTheRedirectAndOthersStay) {
  TrackFn track = [](const std::string& url) -> std::optional<std::string> {
    if (url.find("unsubscribe") != std::string::npos) return std::nullopt;
    return "https://n.test/t/c/" + std::to_string(url.size()) + "?u=" + url;
  };
  const std::string html =
      "<p><a class=x href=\"https://acme.test/a?x=1&amp;y=2\">A</a> "
      "<A HREF='http://acme.test/b'>B</A> <a href=\"mailto:x@y.z\">m</a> "
      "<a href=\"#top\">t</a> <a data-nudge-track=\"off\" href=\"https://acme.test/c\">c</a> "
      "<a href=\"https://n.test/unsubscribe\">u</a> <abbr href=\"https://x\">no</abbr>"
      "<!-- <a href=\"https://acme.test/comment\"> --></p>";
  const std::string out = RewriteHtmlLinks(html, track);
  EXPECT_EQ(
      out,
      "<p><a class=x href=\"https://n.test/t/c/27?u=https://acme.test/a?x=1&amp;y=2\">A</a> "
      "<A HREF='https://n.test/t/c/18?u=http://acme.test/b'>B</A> <a href=\"mailto:x@y.z\">m</a> "
      "<a href=\"#top\">t</a> <a data-nudge-track=\"off\" href=\"https://acme.test/c\">c</a> "
      "<a href=\"https://n.test/unsubscribe\">u</a> <abbr href=\"https://x\">no</abbr>"
      "<!-- <a href=\"https://acme.test/comment\"> --></p>");
}

TEST(Rewrite, LinksMarkedOffAreReportedForTheTextPart) {
  TrackFn track = [](const std::string& url) -> std::optional<std::string> {
    return "https://n.test/t/c?u=" + url;
  };
  std::set<std::string> untracked;
  RewriteHtmlLinks(
      "<a href=\"https://acme.test/a\">a</a> <a data-nudge-track='off' "
      "href=\"https://acme.test/b?x=1&amp;y=2\">b</a>",
      track, &untracked);
  EXPECT_EQ(untracked, std::set<std::string>{"https://acme.test/b?x=1&y=2"});
}

TEST(Rewrite, TextUrlsAndThePixel) {
  TrackFn track = [](const std::string& url) -> std::optional<std::string> {
    return "[" + url + "]";
  };
  EXPECT_EQ(RewriteTextLinks("See https://acme.test/p?a=1. Or (http://acme.test/x), done", track),
            "See [https://acme.test/p?a=1]. Or ([http://acme.test/x]), done");
  std::string html = "<html><body><p>x</p></body></html>";
  InsertOpenPixel(html, "https://n.test/t/o/a&b");
  EXPECT_EQ(html,
            "<html><body><p>x</p><img src=\"https://n.test/t/o/a&amp;b\" width=\"1\" height=\"1\" "
            "alt=\"\" style=\"display:block;border:0\"></body></html>");
  std::string bare = "<p>x</p>";
  InsertOpenPixel(bare, "u");
  EXPECT_EQ(bare.rfind("<p>x</p><img src=\"u\"", 0), 0u);
}

}  // namespace
}  // namespace nudge::track
