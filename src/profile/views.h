// The JSON shapes of contacts and events in the admin API (docs/openapi.yaml).
// Pure functions; thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "store/store.h"

namespace nudge::profile {

// {"id","user_id","anonymous_ids","aliases","email","phone","traits","tags","source",
//  "created_at","last_seen_at"}
nlohmann::json ContactJson(const store::Contact& contact,
                           const std::vector<std::string>& anonymous_ids,
                           const std::vector<std::string>& aliases);

// {"id","type","event","message_id","user_id","anonymous_id","properties","traits",
//  "context","timestamp","received_at"} (absent fields omitted)
nlohmann::json EventJson(const store::Event& event);

}  // namespace nudge::profile
