// ISO-8601 timestamps as the Segment spec sends them, to and from epoch milliseconds.
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::core {

// Accepts "2026-11-24", "2026-11-24T10:00:00Z", "2026-11-24T10:00:00.123+02:00",
// "2026-11-24 10:00:00" (space separator) and fractions of any length (kept to ms).
// A missing zone means UTC. Errors name the offending character's column (1-based).
Result<Millis> ParseIso8601(std::string_view text);

// ParseIso8601 without the error: nullopt when the text is not a timestamp. Never allocates,
// for use on evaluation hot paths.
std::optional<Millis> TryParseIso8601(std::string_view text);

// "2026-11-24T10:00:00.123Z".
std::string FormatIso8601(Millis ms);

// Whether `name` may name a zone of the time zone database ("Europe/Berlin", "UTC",
// "America/Argentina/Buenos_Aires", "Etc/GMT+5"): letters, digits, '_', '-', '+' in parts
// separated by single '/', at most 64 bytes, no part "." or "..". The zone loader opens a file
// by that name: a trait that is a path ("../../etc/x", "/tmp/fifo") must never reach it.
bool IsTimeZoneName(std::string_view name);

}  // namespace nudge::core
