// Workspace policies applied when a journey sends (DIR/policies.yaml, PUT /api/v1/policies):
// quiet hours per channel in the contact's time zone, frequency caps per channel across
// journeys, and the time zone assumed for contacts who have none. Plus the local-time
// arithmetic they and `wait: { until: "09:00" }` need, correct across daylight-saving changes
// (cctz and the system's IANA database). Pure functions; thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::journey {

using core::Millis;

struct QuietHours {
  int from_minute = 21 * 60;  // local time the quiet starts ...
  int to_minute = 8 * 60;     // ... and ends (may wrap past midnight)
};

struct FrequencyCap {
  int max = 0;     // at most this many messages ...
  Millis per = 0;  // ... in any such period, all journeys together
};

struct Topic {
  std::string id;    // "news"
  std::string name;  // "Newsletter", shown on the preference page
};

struct Policies {
  std::string timezone = "UTC";                   // for contacts without traits.timezone
  std::string currency;                           // the `money` filter's default; "" = USD
  std::map<std::string, QuietHours> quiet_hours;  // by channel
  std::map<std::string, FrequencyCap> caps;       // by channel
  std::vector<Topic> topics;                      // what contacts can subscribe to
  // Channels whose new subscriptions wait for confirmation, with the template that asks.
  std::map<std::string, std::string> double_opt_in;  // channel -> template id
};

Result<Policies> ParsePolicies(std::string_view text, std::string_view source);

// Why `topic` (named by a template's `topic:` or `subscribed(topic "...")`) is no topic of
// these policies, or nullopt when it is one: nobody could subscribe to it or leave it, so
// `subscribed(topic "newz")` would be true for everyone subscribed to email.
std::optional<std::string> UnknownTopic(const Policies& policies, std::string_view topic);
std::string ToJson(const Policies& policies);

// The contact's time zone: `name` when it is a known IANA zone, else `fallback`, else UTC.
// Returns the zone's name as used.
std::string ChooseTimeZone(std::string_view name, std::string_view fallback);
bool IsTimeZone(std::string_view name);

// The first moment strictly after `after` when the local time in `tz` is minute_of_day on one
// of the weekdays (bit 0 = Monday). Local times skipped by a daylight-saving change fall on the
// moment of the change; repeated ones take the first.
Millis NextLocalTime(Millis after, const std::string& tz, int minute_of_day, uint8_t weekdays);

// When the quiet hours that contain `at` (local time in tz) end; nullopt when `at` is outside.
std::optional<Millis> QuietUntil(Millis at, const std::string& tz, const QuietHours& quiet);

// The local minute of the day at `at` (for tests and reports).
int LocalMinuteOfDay(Millis at, const std::string& tz);

}  // namespace nudge::journey
