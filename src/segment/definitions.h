// Definitions of segments, lead scoring and lifecycle stages: parsed from YAML (or JSON, which
// is YAML) as written in a workspace directory or sent to the admin API, validated, and
// rendered back as the canonical JSON that is stored. Errors name the source, line:column and
// field; a condition's error points into the file, not into the condition alone.
//
// Formats: docs/segments.md. Pure functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "rules/condition.h"

namespace nudge::segment {

using core::Millis;

struct SegmentDef {
  std::string id;
  std::string name;
  std::string description;
  std::string condition_text;
  std::shared_ptr<const rules::Condition> condition;
  std::string condition_at;  // "source:line:column" of the condition, for errors found later
};

struct ScoreRule {
  std::string id;
  double points = 0;
  // Either an event rule (points for each matching event) ...
  std::string event;
  std::shared_ptr<const rules::Condition> where;  // event-scoped; null = every such event
  // ... or a condition rule (points while the condition holds).
  std::shared_ptr<const rules::Condition> condition;
  std::string where_text, condition_text;
  // At most cap_points from this rule within any cap_period (event rules).
  std::optional<double> cap_points;
  Millis cap_period = 0;
};

struct ScoringDef {
  std::vector<ScoreRule> rules;
  enum class Decay { kNone, kExpire, kHalfLife };
  Decay decay = Decay::kNone;
  Millis decay_period = 0;  // expire_after, or half_life
  std::optional<double> mql;
  std::optional<double> sql;
};

struct StageDef {
  std::string name;
  std::string when_text;
  std::shared_ptr<const rules::Condition> when;
  std::string when_at;  // "source:line:column" of the condition, for errors found later
};

struct StagesDef {
  std::vector<StageDef> stages;  // in order: a later stage is further along
  bool moves_back = false;       // may a contact return to an earlier stage on its own?
};

// `source` names the text in errors ("segments/engaged.yaml", "request body"). `id` (from a
// URL) must match the document's id when both are given, and stands in when it has none.
Result<SegmentDef> ParseSegment(std::string_view text, std::string_view source,
                                std::optional<std::string_view> id = std::nullopt);
Result<ScoringDef> ParseScoring(std::string_view text, std::string_view source);
Result<StagesDef> ParseStages(std::string_view text, std::string_view source);

// What is wrong with the segments a segment's condition names, in the order it names them:
// itself ("a segment cannot refer to itself"), one `find` does not know ("refers to the
// unknown segment \"x\""); then, when it does not name itself, a way back to it through the
// segments it names ("refers to itself through other segments"). `find` gives a known segment
// by id, or null. The API refuses on the first; validate lists them all.
std::vector<std::string> SegmentReferenceProblems(
    const SegmentDef& def, const std::function<const SegmentDef*(const std::string&)>& find);

// The article's journey stages, Awareness to Advocacy, with entry conditions on common events.
StagesDef DefaultStages();

std::string ToJson(const SegmentDef& def);
std::string ToJson(const ScoringDef& def);
std::string ToJson(const StagesDef& def);

// An id: 1 to 64 of [a-z0-9_-], starting with a letter or digit.
Status CheckId(std::string_view id, std::string_view where);

}  // namespace nudge::segment
