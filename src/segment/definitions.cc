#include "segment/definitions.h"

#include <nlohmann/json.hpp>
#include <set>

#include "core/yaml.h"
#include "rules/condition_yaml.h"

namespace nudge::segment {
namespace {

using core::YamlDoc;
using nlohmann::json;

Result<std::shared_ptr<const rules::Condition>> CompileAt(
    const YamlDoc& doc, const YAML::Node& node, const char* field,
    const rules::CompileOptions& options = {}) {
  return rules::CompileYaml(doc, node, field, options);
}

std::string DurationText(Millis ms) {
  if (ms % (7 * 86400000LL) == 0) return std::to_string(ms / (7 * 86400000LL)) + "w";
  if (ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  return std::to_string(ms / 1000) + "s";
}

}  // namespace

Status CheckId(std::string_view id, std::string_view where) {
  if (id.empty() || id.size() > 64)
    return Status::Invalid("an id has 1 to 64 characters", std::string(where));
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '-' || c == '_'));
    if (!ok)
      return Status::Invalid(
          "'" + std::string(id) + "' is not an id: use lowercase letters, digits, '-' and '_'",
          std::string(where));
  }
  return Status::Ok();
}

std::vector<std::string> SegmentReferenceProblems(
    const SegmentDef& def, const std::function<const SegmentDef*(const std::string&)>& find) {
  std::vector<std::string> problems;
  const auto& names = def.condition->segments();
  bool itself = false;
  for (const auto& dep : names) {
    if (dep == def.id) {
      itself = true;
      problems.push_back("a segment cannot refer to itself");
    } else if (!find(dep)) {
      problems.push_back("refers to the unknown segment \"" + dep + "\"");
    }
  }
  if (itself) return problems;
  std::vector<std::string> stack(names.begin(), names.end());
  std::set<std::string> seen;
  while (!stack.empty()) {
    const std::string cur = stack.back();
    stack.pop_back();
    if (cur == def.id) {
      problems.push_back("refers to itself through other segments");
      break;
    }
    if (!seen.insert(cur).second) continue;
    if (const SegmentDef* next = find(cur))
      for (const auto& dep : next->condition->segments()) stack.push_back(dep);
  }
  return problems;
}

Result<SegmentDef> ParseSegment(std::string_view text, std::string_view source,
                                std::optional<std::string_view> id) {
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(core::YamlKnownKeys(doc, root, {"id", "name", "description", "condition"}));
  SegmentDef def;
  NUDGE_ASSIGN_OR_RETURN(auto doc_id, core::YamlString(doc, root, "id"));
  if (doc_id && id && *doc_id != *id)
    return Err(doc.ErrorAt(root["id"], "id",
                           "'" + *doc_id + "' differs from '" + std::string(*id) + "' in the URL"));
  if (!doc_id && !id) return Err(Status::Invalid("id: is required", std::string(source)));
  def.id = doc_id ? *doc_id : std::string(*id);
  if (Status s = CheckId(def.id, doc_id ? doc.Where(root["id"]) : std::string(source)); !s.ok())
    return Err(Status::Invalid("id: " + s.message(), s.where()));
  NUDGE_ASSIGN_OR_RETURN(auto name, core::YamlString(doc, root, "name"));
  def.name = name ? *name : def.id;
  NUDGE_ASSIGN_OR_RETURN(auto description, core::YamlString(doc, root, "description"));
  def.description = description.value_or("");
  if (!root["condition"].IsDefined() || root["condition"].IsNull())
    return Err(Status::Invalid("condition: is required", root["condition"].IsDefined()
                                                             ? doc.Where(root["condition"])
                                                             : doc.Where(root)));
  NUDGE_ASSIGN_OR_RETURN(def.condition, CompileAt(doc, root["condition"], "condition"));
  def.condition_text = root["condition"].Scalar();
  def.condition_at = doc.Where(root["condition"]);
  return def;
}

Result<ScoringDef> ParseScoring(std::string_view text, std::string_view source) {
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(core::YamlKnownKeys(doc, root, {"rules", "decay", "thresholds"}));
  ScoringDef def;
  const YAML::Node rules = root["rules"];
  if (rules.IsDefined() && !rules.IsNull()) {
    if (!rules.IsSequence()) return Err(doc.ErrorAt(rules, "rules", "expected a list of rules"));
    std::set<std::string> ids;
    for (const YAML::Node& r : rules) {
      NUDGE_TRY(
          core::YamlKnownKeys(doc, r, {"id", "event", "where", "condition", "points", "cap"}));
      ScoreRule rule;
      NUDGE_ASSIGN_OR_RETURN(auto rid, core::YamlString(doc, r, "id"));
      if (!rid) return Err(doc.ErrorAt(r, "id", "each rule needs an id"));
      if (Status s = CheckId(*rid, doc.Where(r["id"])); !s.ok())
        return Err(Status::Invalid("id: " + s.message(), s.where()));
      if (!ids.insert(*rid).second)
        return Err(doc.ErrorAt(r["id"], "id", "'" + *rid + "' is used twice"));
      rule.id = *rid;
      NUDGE_ASSIGN_OR_RETURN(auto points, core::YamlNumber(doc, r, "points"));
      if (!points) return Err(doc.ErrorAt(r, "points", "each rule needs points (may be negative)"));
      rule.points = *points;
      NUDGE_ASSIGN_OR_RETURN(auto event, core::YamlString(doc, r, "event"));
      const bool has_condition = r["condition"].IsDefined() && !r["condition"].IsNull();
      if (event.has_value() == has_condition)
        return Err(doc.ErrorAt(r, rule.id, "a rule has either an event or a condition"));
      if (event) {
        rule.event = *event;
        if (r["where"].IsDefined() && !r["where"].IsNull()) {
          NUDGE_ASSIGN_OR_RETURN(rule.where,
                                 CompileAt(doc, r["where"], "where", {.event_in_scope = true}));
          rule.where_text = r["where"].Scalar();
        }
        if (const YAML::Node cap = r["cap"]; cap.IsDefined() && !cap.IsNull()) {
          NUDGE_TRY(core::YamlKnownKeys(doc, cap, {"points", "per"}));
          NUDGE_ASSIGN_OR_RETURN(rule.cap_points, core::YamlNumber(doc, cap, "points"));
          NUDGE_ASSIGN_OR_RETURN(auto per, core::YamlDuration(doc, cap, "per"));
          if (!rule.cap_points || !per || *per <= 0)
            return Err(doc.ErrorAt(cap, "cap", "write cap: { points: 30, per: 7d }"));
          rule.cap_period = *per;
        }
      } else {
        if (r["where"].IsDefined() || r["cap"].IsDefined())
          return Err(doc.ErrorAt(r, rule.id, "where and cap belong to event rules"));
        NUDGE_ASSIGN_OR_RETURN(rule.condition, CompileAt(doc, r["condition"], "condition"));
        rule.condition_text = r["condition"].Scalar();
      }
      def.rules.push_back(std::move(rule));
    }
  }
  if (const YAML::Node decay = root["decay"]; decay.IsDefined() && !decay.IsNull()) {
    NUDGE_TRY(core::YamlKnownKeys(doc, decay, {"half_life", "expire_after"}));
    NUDGE_ASSIGN_OR_RETURN(auto half, core::YamlDuration(doc, decay, "half_life"));
    NUDGE_ASSIGN_OR_RETURN(auto expire, core::YamlDuration(doc, decay, "expire_after"));
    if (half.has_value() == expire.has_value())
      return Err(doc.ErrorAt(decay, "decay", "give either half_life or expire_after"));
    def.decay = half ? ScoringDef::Decay::kHalfLife : ScoringDef::Decay::kExpire;
    def.decay_period = half ? *half : *expire;
    if (def.decay_period <= 0)
      return Err(doc.ErrorAt(decay, "decay", "the period must be positive"));
  }
  if (const YAML::Node t = root["thresholds"]; t.IsDefined() && !t.IsNull()) {
    NUDGE_TRY(core::YamlKnownKeys(doc, t, {"mql", "sql"}));
    NUDGE_ASSIGN_OR_RETURN(def.mql, core::YamlNumber(doc, t, "mql"));
    NUDGE_ASSIGN_OR_RETURN(def.sql, core::YamlNumber(doc, t, "sql"));
    if (def.mql && def.sql && *def.sql < *def.mql)
      return Err(doc.ErrorAt(t, "thresholds", "sql must be at least mql"));
  }
  return def;
}

Result<StagesDef> ParseStages(std::string_view text, std::string_view source) {
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(core::YamlKnownKeys(doc, root, {"stages", "moves_back"}));
  StagesDef def;
  NUDGE_ASSIGN_OR_RETURN(auto back, core::YamlBool(doc, root, "moves_back"));
  def.moves_back = back.value_or(false);
  const YAML::Node stages = root["stages"];
  if (!stages.IsDefined() || !stages.IsSequence() || stages.size() == 0)
    return Err(Status::Invalid("stages: expected a list of stages", doc.Where(root)));
  std::set<std::string> names;
  for (const YAML::Node& s : stages) {
    NUDGE_TRY(core::YamlKnownKeys(doc, s, {"name", "when"}));
    StageDef stage;
    NUDGE_ASSIGN_OR_RETURN(auto name, core::YamlString(doc, s, "name"));
    if (!name || name->empty()) return Err(doc.ErrorAt(s, "name", "each stage needs a name"));
    if (!names.insert(*name).second)
      return Err(doc.ErrorAt(s["name"], "name", "'" + *name + "' is used twice"));
    stage.name = *name;
    if (!s["when"].IsDefined() || s["when"].IsNull())
      return Err(doc.ErrorAt(s, stage.name, "each stage needs `when:` (a condition)"));
    NUDGE_ASSIGN_OR_RETURN(stage.when, CompileAt(doc, s["when"], "when"));
    stage.when_text = s["when"].Scalar();
    stage.when_at = doc.Where(s["when"]);
    def.stages.push_back(std::move(stage));
  }
  return def;
}

StagesDef DefaultStages() {
  // The article's table: what people do at each stage of the journey.
  static constexpr std::pair<const char*, const char*> kStages[] = {
      {"Awareness", "true"},
      {"Consideration",
       R"((event "Page Viewed" where properties.path starts_with "/pricing") or )"
       R"(event "Case Study Downloaded" or event "Webinar Attended" or event "Content Downloaded")"},
      {"Decision",
       R"(event "Demo Requested" or event "Demo Booked" or event "Trial Started" or )"
       R"(count(event "Page Viewed" where properties.path starts_with "/pricing" within 7d) >= 3)"},
      {"Retention", R"(event "Order Completed" or event "Subscription Started")"},
      {"Advocacy",
       R"(event "Review Submitted" or event "Referral Sent" or event "Testimonial Given")"},
  };
  StagesDef def;
  for (const auto& [name, when] : kStages) {
    StageDef s;
    s.name = name;
    s.when_text = when;
    auto compiled = rules::Condition::Compile(when);
    if (!compiled) std::abort();  // a built-in condition that does not compile is a bug
    s.when = std::move(*compiled);
    def.stages.push_back(std::move(s));
  }
  return def;
}

std::string ToJson(const SegmentDef& def) {
  return json{{"id", def.id},
              {"name", def.name},
              {"description", def.description},
              {"condition", def.condition_text}}
      .dump();
}

std::string ToJson(const ScoringDef& def) {
  json rules = json::array();
  for (const auto& r : def.rules) {
    json j{{"id", r.id}, {"points", r.points}};
    if (!r.event.empty()) {
      j["event"] = r.event;
      if (!r.where_text.empty()) j["where"] = r.where_text;
      if (r.cap_points) j["cap"] = {{"points", *r.cap_points}, {"per", DurationText(r.cap_period)}};
    } else {
      j["condition"] = r.condition_text;
    }
    rules.push_back(std::move(j));
  }
  json out{{"rules", rules}};
  if (def.decay == ScoringDef::Decay::kHalfLife)
    out["decay"] = {{"half_life", DurationText(def.decay_period)}};
  if (def.decay == ScoringDef::Decay::kExpire)
    out["decay"] = {{"expire_after", DurationText(def.decay_period)}};
  if (def.mql || def.sql) {
    out["thresholds"] = json::object();
    if (def.mql) out["thresholds"]["mql"] = *def.mql;
    if (def.sql) out["thresholds"]["sql"] = *def.sql;
  }
  return out.dump();
}

std::string ToJson(const StagesDef& def) {
  json stages = json::array();
  for (const auto& s : def.stages) stages.push_back({{"name", s.name}, {"when", s.when_text}});
  return json{{"stages", stages}, {"moves_back", def.moves_back}}.dump();
}

}  // namespace nudge::segment
