// Percent-encoding (RFC 3986) for URL paths, query values and form bodies. Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace nudge::core {

// Every byte but ALPHA / DIGIT / "-" / "." / "_" / "~" as %XX (upper-case hex). With
// space_as_plus, a space becomes "+" (application/x-www-form-urlencoded).
std::string PercentEncode(std::string_view s, bool space_as_plus = false);

}  // namespace nudge::core
