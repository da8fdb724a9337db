#include "track/pages.h"

#include "core/url.h"

namespace nudge::track {

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Page(std::string_view title, std::string_view body_html) {
  std::string out =
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>";
  out += HtmlEscape(title);
  out +=
      "</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
      "padding:0 1rem;color:#222}button{font-size:1rem;padding:.5rem 1.2rem}"
      "label{display:block;margin:.4rem 0}</style></head><body><h1>";
  out += HtmlEscape(title);
  out += "</h1>";
  out += body_html;
  out += "</body></html>";
  return out;
}

std::string UnsubscribeConfirmPage(std::string_view what, std::string_view action) {
  return Page("Unsubscribe", "<p>Stop receiving " + HtmlEscape(what) +
                                 "?</p><form method=\"post\" action=\"" + HtmlEscape(action) +
                                 "\"><button type=\"submit\">Unsubscribe</button></form>");
}

std::string UnsubscribedPage(std::string_view what, std::string_view preferences_url) {
  std::string body = "<p>You are unsubscribed from " + HtmlEscape(what) + ".</p>";
  if (!preferences_url.empty())
    body += "<p><a href=\"" + HtmlEscape(preferences_url) + "\">Manage your preferences</a></p>";
  return Page("Unsubscribed", body);
}

std::string PreferencesPage(const std::vector<PreferenceItem>& items, std::string_view action,
                            std::string_view notice) {
  std::string body;
  if (!notice.empty()) body += "<p><strong>" + HtmlEscape(notice) + "</strong></p>";
  body += "<form method=\"post\" action=\"" + HtmlEscape(action) + "\">";
  for (const auto& i : items) {
    body += "<label><input type=\"checkbox\" name=\"on\" value=\"" + HtmlEscape(i.key) + "\"" +
            (i.subscribed ? " checked" : "") + "> " + HtmlEscape(i.label) + "</label>";
  }
  body +=
      "<label><input type=\"checkbox\" name=\"all\" value=\"off\"> Unsubscribe from "
      "everything</label><p><button type=\"submit\">Save</button></p></form>";
  return Page("Your preferences", body);
}

std::string ConfirmedPage(std::string_view what) {
  return Page("Subscription confirmed",
              "<p>Thank you: your subscription to " + HtmlEscape(what) + " is confirmed.</p>");
}

std::string ErrorPage(std::string_view message) {
  return Page("This link does not work", "<p>" + HtmlEscape(message) + "</p>");
}

const std::string& TransparentGif() {
  static const std::string kGif(
      "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00"
      "\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b",
      43);
  return kGif;
}

std::vector<std::pair<std::string, std::string>> ParseForm(std::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  auto decode = [](std::string_view s) { return core::PercentDecode(s, /*plus_as_space=*/true); };
  size_t start = 0;
  while (start <= body.size() && out.size() < 1000) {
    size_t amp = body.find('&', start);
    if (amp == std::string_view::npos) amp = body.size();
    const std::string_view pair = body.substr(start, amp - start);
    if (!pair.empty()) {
      const auto eq = pair.find('=');
      out.emplace_back(decode(pair.substr(0, eq)),
                       eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1)));
    }
    start = amp + 1;
  }
  return out;
}

}  // namespace nudge::track
