// Writing JSON text by hand where building a document would cost more than the output:
// the ingest hot path and API pages. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace nudge::core {

// Appends s as a quoted JSON string. s must be valid UTF-8 (control characters are escaped).
void AppendJsonString(std::string& out, std::string_view s);

inline std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

// True when s is valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace nudge::core
