// Click tracking and the open pixel, applied to a rendered email: every http(s) link of the
// HTML part (<a href>, <area href>) and every http(s) URL of the text part goes through
// `track(url)`, which returns the signed redirect (or nullopt to leave the link alone: nudge's
// own unsubscribe and preference links, links marked data-nudge-track="off"). The open pixel is
// a 1×1 image placed before </body>.
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace nudge::track {

using TrackFn = std::function<std::optional<std::string>(const std::string& url)>;

// HTML: href values are entity-decoded before track() sees them and escaped again after.
// `untracked`, when given, receives the (decoded) URLs of links marked data-nudge-track="off",
// for the text part to leave alone too.
std::string RewriteHtmlLinks(std::string_view html, const TrackFn& track,
                             std::set<std::string>* untracked = nullptr);
// Text: URLs start at "http://" or "https://" and end at whitespace, '<', '>', '"', or a
// closing ')' / trailing punctuation that is not part of the URL.
std::string RewriteTextLinks(std::string_view text, const TrackFn& track);
void InsertOpenPixel(std::string& html, std::string_view pixel_url);

}  // namespace nudge::track
