#include "profile/views.h"

#include <nlohmann/json.hpp>

#include "core/time.h"

namespace nudge::profile {

using nlohmann::json;

namespace {
json ParseOr(const std::string& text, json fallback) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}
json OptString(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }
}  // namespace

json ContactJson(const store::Contact& c, const std::vector<std::string>& anonymous_ids,
                 const std::vector<std::string>& aliases) {
  return json{
      {"id", c.id},
      {"user_id", OptString(c.user_id)},
      {"anonymous_ids", anonymous_ids},
      {"aliases", aliases},
      {"email", OptString(c.email)},
      {"phone", OptString(c.phone)},
      {"traits", ParseOr(c.traits, json::object())},
      {"tags", ParseOr(c.tags, json::array())},
      {"source", OptString(c.source)},
      {"created_at", core::FormatIso8601(c.created_at)},
      {"last_seen_at", core::FormatIso8601(c.last_seen_at)},
  };
}

json EventJson(const store::Event& e) {
  const json body = ParseOr(e.body, json::object());
  json out{
      {"id", e.id},
      {"type", e.type},
      {"event", e.name.empty() ? json(nullptr) : json(e.name)},
      {"message_id", e.message_id},
      {"timestamp", core::FormatIso8601(e.timestamp)},
      {"received_at", core::FormatIso8601(e.received_at)},
  };
  static constexpr std::pair<const char*, const char*> kCopied[] = {
      {"userId", "user_id"},         {"anonymousId", "anonymous_id"},
      {"previousId", "previous_id"}, {"groupId", "group_id"},
      {"properties", "properties"},  {"traits", "traits"},
      {"context", "context"},        {"integrations", "integrations"},
      {"sentAt", "sent_at"},         {"originalTimestamp", "original_timestamp"},
  };
  for (const auto& [from, to] : kCopied) {
    auto it = body.find(from);
    if (it != body.end()) out[to] = *it;
  }
  if (!out.contains("properties") && (e.type == "track" || e.type == "page" || e.type == "screen"))
    out["properties"] = json::object();
  return out;
}

}  // namespace nudge::profile
