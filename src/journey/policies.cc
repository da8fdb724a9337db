#include "journey/policies.h"

#include <cctz/civil_time.h>
#include <cctz/time_zone.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "core/time.h"
#include "core/yaml.h"
#include "rules/condition.h"

namespace nudge::journey {
namespace {

using Seconds = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>;

std::optional<int> ParseClock(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!digit(s[0]) || !digit(s[1]) || !digit(s[3]) || !digit(s[4])) return std::nullopt;
  const int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

std::string ClockText(int minute) {
  char buf[16];  // "HH:MM"; room for any int, so the compiler can tell nothing is cut
  std::snprintf(buf, sizeof buf, "%02d:%02d", minute / 60, minute % 60);
  return buf;
}

// Loading a zone reads the database once; zones are cached for the process.
const cctz::time_zone& Zone(const std::string& name) {
  static std::mutex mutex;
  static std::unordered_map<std::string, cctz::time_zone> zones;
  std::lock_guard lock(mutex);
  auto it = zones.find(name);
  if (it != zones.end()) return it->second;
  static const cctz::time_zone utc = cctz::utc_time_zone();
  cctz::time_zone tz;
  // Only names that load are kept: contacts' traits must not grow the cache without bound.
  if (!core::IsTimeZoneName(name) || !cctz::load_time_zone(name, &tz)) return utc;
  return zones.emplace(name, tz).first->second;
}

Seconds ToSeconds(Millis ms) {
  return Seconds(std::chrono::seconds(ms >= 0 ? ms / 1000 : (ms - 999) / 1000));
}

Millis FromSeconds(Seconds s) { return static_cast<Millis>(s.time_since_epoch().count()) * 1000; }

Millis AtLocal(const cctz::time_zone& tz, const cctz::civil_second& cs) {
  const auto cl = tz.lookup(cs);
  if (cl.kind == cctz::time_zone::civil_lookup::SKIPPED) return FromSeconds(cl.trans);
  return FromSeconds(cl.pre);
}

int WeekdayBit(cctz::weekday wd) {
  switch (wd) {
    case cctz::weekday::monday:
      return 0;
    case cctz::weekday::tuesday:
      return 1;
    case cctz::weekday::wednesday:
      return 2;
    case cctz::weekday::thursday:
      return 3;
    case cctz::weekday::friday:
      return 4;
    case cctz::weekday::saturday:
      return 5;
    case cctz::weekday::sunday:
      return 6;
  }
  return 0;
}

}  // namespace

bool IsTimeZone(std::string_view name) {
  if (!core::IsTimeZoneName(name)) return false;
  cctz::time_zone tz;
  return cctz::load_time_zone(std::string(name), &tz);
}

std::optional<std::string> UnknownTopic(const Policies& policies, std::string_view topic) {
  std::string known;
  for (const Topic& t : policies.topics) {
    if (t.id == topic) return std::nullopt;
    known += (known.empty() ? "" : ", ") + t.id;
  }
  return "topic '" + std::string(topic) + "' is not one of the workspace's topics (policies.yaml " +
         (known.empty() ? "lists none" : "topics: " + known) +
         "): nobody can subscribe to it or leave it";
}

std::string ChooseTimeZone(std::string_view name, std::string_view fallback) {
  if (!name.empty() && IsTimeZone(name)) return std::string(name);
  if (!fallback.empty() && IsTimeZone(fallback)) return std::string(fallback);
  return "UTC";
}

Millis NextLocalTime(Millis after, const std::string& tz_name, int minute_of_day,
                     uint8_t weekdays) {
  const cctz::time_zone& tz = Zone(tz_name);
  if (weekdays == 0) weekdays = 0x7F;
  const cctz::civil_second local = tz.lookup(ToSeconds(after)).cs;
  cctz::civil_day day(local);
  for (int i = 0; i < 15; ++i, ++day) {
    if (!(weekdays & (1 << WeekdayBit(cctz::get_weekday(day))))) continue;
    const cctz::civil_second cs(day.year(), day.month(), day.day(), minute_of_day / 60,
                                minute_of_day % 60, 0);
    const Millis at = AtLocal(tz, cs);
    if (at > after) return at;
  }
  return after + 7LL * 86400 * 1000;  // unreachable with a non-empty weekday mask
}

std::optional<Millis> QuietUntil(Millis at, const std::string& tz_name, const QuietHours& q) {
  const int minute = LocalMinuteOfDay(at, tz_name);
  const bool wraps = q.from_minute > q.to_minute;
  const bool quiet = q.from_minute == q.to_minute
                         ? false
                         : (wraps ? (minute >= q.from_minute || minute < q.to_minute)
                                  : (minute >= q.from_minute && minute < q.to_minute));
  if (!quiet) return std::nullopt;
  return NextLocalTime(at, tz_name, q.to_minute, 0x7F);
}

int LocalMinuteOfDay(Millis at, const std::string& tz_name) {
  const cctz::civil_second cs = Zone(tz_name).lookup(ToSeconds(at)).cs;
  return static_cast<int>(cs.hour() * 60 + cs.minute());
}

Result<Policies> ParsePolicies(std::string_view text, std::string_view source) {
  NUDGE_ASSIGN_OR_RETURN(core::YamlDoc doc, core::LoadYaml(text, source));
  NUDGE_TRY(core::YamlKnownKeys(
      doc, doc.root,
      {"timezone", "currency", "quiet_hours", "frequency_caps", "topics", "double_opt_in"}));
  Policies p;
  NUDGE_ASSIGN_OR_RETURN(auto currency, core::YamlString(doc, doc.root, "currency"));
  if (currency) {
    const bool ok =
        currency->size() == 3 && std::all_of(currency->begin(), currency->end(),
                                             [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!ok)
      return Err(doc.ErrorAt(doc.root["currency"], "currency",
                             "expected an ISO 4217 code in capitals, such as EUR or USD"));
    p.currency = *currency;
  }
  NUDGE_ASSIGN_OR_RETURN(auto tz, core::YamlString(doc, doc.root, "timezone"));
  if (tz) {
    if (!IsTimeZone(*tz))
      return Err(doc.ErrorAt(doc.root["timezone"], "timezone",
                             "'" + *tz + "' is not an IANA time zone (e.g. Europe/Berlin)"));
    p.timezone = *tz;
  }
  // Quiet hours, caps and opt-in are for people: a webhook goes to a system, and is neither held
  // nor capped, so naming it would do nothing.
  static const std::set<std::string> kPersonChannels = {"email", "sms", "push"};
  if (const YAML::Node q = doc.root["quiet_hours"]; q.IsDefined() && !q.IsNull()) {
    if (!q.IsMap())
      return Err(
          doc.ErrorAt(q, "quiet_hours", "expected { email: { from: \"21:00\", to: \"08:00\" } }"));
    for (const auto& kv : q) {
      const std::string channel = kv.first.Scalar();
      if (!kPersonChannels.count(channel))
        return Err(doc.ErrorAt(kv.first, channel,
                               channel == "webhook" ? "webhooks have no quiet hours"
                                                    : "unknown channel (email, sms, push)"));
      NUDGE_TRY(core::YamlKnownKeys(doc, kv.second, {"from", "to"}));
      NUDGE_ASSIGN_OR_RETURN(auto from, core::YamlString(doc, kv.second, "from"));
      NUDGE_ASSIGN_OR_RETURN(auto to, core::YamlString(doc, kv.second, "to"));
      auto f = from ? ParseClock(*from) : std::nullopt;
      auto t = to ? ParseClock(*to) : std::nullopt;
      if (!f || !t)
        return Err(doc.ErrorAt(kv.second, channel, "expected from: \"HH:MM\" and to: \"HH:MM\""));
      p.quiet_hours[channel] = {*f, *t};
    }
  }
  if (const YAML::Node c = doc.root["frequency_caps"]; c.IsDefined() && !c.IsNull()) {
    if (!c.IsMap())
      return Err(doc.ErrorAt(c, "frequency_caps", "expected { email: { max: 3, per: 7d } }"));
    for (const auto& kv : c) {
      const std::string channel = kv.first.Scalar();
      if (!kPersonChannels.count(channel))
        return Err(doc.ErrorAt(kv.first, channel,
                               channel == "webhook" ? "webhooks are not capped"
                                                    : "unknown channel (email, sms, push)"));
      NUDGE_TRY(core::YamlKnownKeys(doc, kv.second, {"max", "per"}));
      NUDGE_ASSIGN_OR_RETURN(auto max, core::YamlNumber(doc, kv.second, "max"));
      NUDGE_ASSIGN_OR_RETURN(auto per, core::YamlDuration(doc, kv.second, "per"));
      if (!max || *max < 0 || !per || *per <= 0)
        return Err(doc.ErrorAt(kv.second, channel, "expected max: N and per: 7d"));
      p.caps[channel] = {static_cast<int>(*max), *per};
    }
  }
  if (const YAML::Node t = doc.root["topics"]; t.IsDefined() && !t.IsNull()) {
    if (!t.IsSequence()) return Err(doc.ErrorAt(t, "topics", "expected a list of { id, name }"));
    std::set<std::string> ids;
    for (const auto& item : t) {
      NUDGE_TRY(core::YamlKnownKeys(doc, item, {"id", "name"}));
      NUDGE_ASSIGN_OR_RETURN(auto id, core::YamlString(doc, item, "id"));
      NUDGE_ASSIGN_OR_RETURN(auto name, core::YamlString(doc, item, "name"));
      if (!id || id->empty() || id->find('/') != std::string::npos)
        return Err(doc.ErrorAt(item, "id", "each topic needs an id (no '/')"));
      if (!ids.insert(*id).second)
        return Err(doc.ErrorAt(item, "id", "'" + *id + "' is used twice"));
      p.topics.push_back({*id, name.value_or(*id)});
    }
  }
  if (const YAML::Node d = doc.root["double_opt_in"]; d.IsDefined() && !d.IsNull()) {
    if (!d.IsMap())
      return Err(doc.ErrorAt(d, "double_opt_in", "expected { email: { template: id } }"));
    for (const auto& kv : d) {
      const std::string channel = kv.first.Scalar();
      if (!kPersonChannels.count(channel))
        return Err(doc.ErrorAt(kv.first, channel, "unknown channel (email, sms, push)"));
      NUDGE_TRY(core::YamlKnownKeys(doc, kv.second, {"template"}));
      NUDGE_ASSIGN_OR_RETURN(auto tmpl, core::YamlString(doc, kv.second, "template"));
      if (!tmpl) return Err(doc.ErrorAt(kv.second, channel, "name the confirmation template"));
      p.double_opt_in[channel] = *tmpl;
    }
  }
  return p;
}

std::string ToJson(const Policies& p) {
  nlohmann::json quiet = nlohmann::json::object(), caps = nlohmann::json::object();
  for (const auto& [ch, q] : p.quiet_hours)
    quiet[ch] = {{"from", ClockText(q.from_minute)}, {"to", ClockText(q.to_minute)}};
  for (const auto& [ch, c] : p.caps) {
    std::string per = std::to_string(c.per / 1000) + "s";
    if (c.per % 86400000 == 0)
      per = std::to_string(c.per / 86400000) + "d";
    else if (c.per % 3600000 == 0)
      per = std::to_string(c.per / 3600000) + "h";
    caps[ch] = {{"max", c.max}, {"per", per}};
  }
  nlohmann::json topics = nlohmann::json::array(), doi = nlohmann::json::object();
  for (const auto& t : p.topics) topics.push_back({{"id", t.id}, {"name", t.name}});
  for (const auto& [ch, tmpl] : p.double_opt_in) doi[ch] = {{"template", tmpl}};
  nlohmann::json out{{"timezone", p.timezone}, {"quiet_hours", quiet}, {"frequency_caps", caps}};
  // Topics and double opt-in appear only when set, so a policies file reads back as written.
  if (!p.currency.empty()) out["currency"] = p.currency;
  if (!topics.empty()) out["topics"] = topics;
  if (!doi.empty()) out["double_opt_in"] = doi;
  return out.dump();
}

}  // namespace nudge::journey
