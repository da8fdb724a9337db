// The `date` filter's two halves: reading a time as Ruby's Time.parse reads the common formats
// (ISO 8601, RFC 2822, "March 5, 2024", "5 Mar 2024 10:00", "2024/03/05", "05/03/2024"), and
// writing it with Ruby's strftime (flags - _ 0 ^ #, widths, %N/%L digits, %:z). Times without
// a zone are UTC: nudge renders as Ruby does with TZ=UTC. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::content::internal {

struct Time {
  int64_t seconds = 0;  // since the epoch, UTC
  int32_t nanos = 0;
  int32_t offset = 0;    // seconds east of UTC, for the local fields and %z
  bool utc_name = true;  // %Z prints "UTC" (else nothing, as for a fixed offset)
};

// nullopt when the text is not a time this parser reads (the filter then returns its input).
std::optional<Time> ParseTime(std::string_view text);

// False when the format ends inside a directive ("%", "%-"): Ruby's "invalid format".
bool Strftime(const Time& t, std::string_view format, std::string& out);

}  // namespace nudge::content::internal
