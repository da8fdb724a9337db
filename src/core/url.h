// Percent-encoding (RFC 3986) for URL paths, query values and form bodies. Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace nudge::core {

// Every byte but ALPHA / DIGIT / "-" / "." / "_" / "~" as %XX (upper-case hex). With
// space_as_plus, a space becomes "+" (application/x-www-form-urlencoded).
std::string PercentEncode(std::string_view s, bool space_as_plus = false);
// %XX escapes decoded (an invalid one stays as written); with plus_as_space, "+" is a space
// (application/x-www-form-urlencoded).
std::string PercentDecode(std::string_view s, bool plus_as_space = false);

}  // namespace nudge::core
