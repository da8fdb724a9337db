// The few pages people see from nudge: the unsubscribe confirmation, the preference page and
// the double opt-in confirmation. Small, self-contained HTML with every value escaped.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nudge::track {

std::string HtmlEscape(std::string_view s);

// A page with a title and body HTML (already escaped where needed).
std::string Page(std::string_view title, std::string_view body_html);

// "Unsubscribe from <what>?" with a button that POSTs to `action`.
std::string UnsubscribeConfirmPage(std::string_view what, std::string_view action);
std::string UnsubscribedPage(std::string_view what, std::string_view preferences_url);

struct PreferenceItem {
  std::string key;    // "email", "sms", "email/news"
  std::string label;  // "Email", "Newsletter"
  bool subscribed = false;
};
// A form (POST to `action`) with a checkbox per item and an "unsubscribe from everything" box.
std::string PreferencesPage(const std::vector<PreferenceItem>& items, std::string_view action,
                            std::string_view notice);

std::string ConfirmedPage(std::string_view what);
std::string ErrorPage(std::string_view message);

// The 43-byte transparent GIF of the open pixel.
const std::string& TransparentGif();

// Decodes an application/x-www-form-urlencoded body into (name, value) pairs.
std::vector<std::pair<std::string, std::string>> ParseForm(std::string_view body);

}  // namespace nudge::track
