#include "profile/traits.h"

#include <nlohmann/json.hpp>

namespace nudge::profile {
namespace {

using nlohmann::json;

Result<json> ParseObject(std::string_view text, const char* what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Err(Status::Invalid(std::string(what) + " must be a JSON object"));
  return j;
}

}  // namespace

Result<std::string> MergeTraits(std::string_view base, std::string_view patch) {
  NUDGE_ASSIGN_OR_RETURN(json out, ParseObject(base.empty() ? "{}" : base, "traits"));
  NUDGE_ASSIGN_OR_RETURN(json p, ParseObject(patch.empty() ? "{}" : patch, "traits"));
  for (auto& [key, value] : p.items()) {
    if (value.is_null()) {
      out.erase(key);
    } else {
      out[key] = std::move(value);
    }
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> FillTraits(std::string_view into, std::string_view from) {
  NUDGE_ASSIGN_OR_RETURN(json out, ParseObject(into.empty() ? "{}" : into, "traits"));
  NUDGE_ASSIGN_OR_RETURN(json f, ParseObject(from.empty() ? "{}" : from, "traits"));
  for (auto& [key, value] : f.items())
    if (!out.contains(key)) out[key] = std::move(value);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> UnionTags(std::string_view a, std::string_view b) {
  json ja = json::parse(a.empty() ? "[]" : a, nullptr, false);
  json jb = json::parse(b.empty() ? "[]" : b, nullptr, false);
  if (ja.is_discarded() || !ja.is_array() || jb.is_discarded() || !jb.is_array())
    return Err(Status::Invalid("tags must be a JSON array"));
  for (auto& t : jb) {
    if (!t.is_string()) continue;
    if (std::find(ja.begin(), ja.end(), t) == ja.end()) ja.push_back(t);
  }
  return ja.dump();
}

}  // namespace nudge::profile
