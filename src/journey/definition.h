// Journey definitions: the YAML (or JSON) files of DIR/journeys/, parsed, checked and
// compiled. docs/journeys.md describes the format; docs/journey.schema.json is its JSON Schema.
//
// ParseJourney refuses what cannot be read (wrong keys, kinds, bad conditions) at the first
// problem. CheckJourney then lists every problem of the step graph: unknown targets,
// unreachable steps, loops that never wait, missing templates. Every error names
// source:line:column. Pure functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "rules/condition.h"

namespace nudge::journey {

using core::Millis;

// Where in its file a part of a journey was written ("journeys/x.yaml:12:5").
using Where = std::string;

enum class TriggerKind {
  kEvent,           // an event, optionally filtered
  kSegmentEntered,  // Segment Entered for a segment
  kSegmentExited,
  kStageChanged,  // Stage Changed, to a stage or to any
  kTraitChanged,  // a trait took a different value
  kDate,          // a date trait, plus or minus an offset, arrives
  kApi,           // POST /api/v1/journeys/{id}/trigger only
};

struct Trigger {
  TriggerKind kind = TriggerKind::kEvent;
  std::string event;                              // kEvent
  std::shared_ptr<const rules::Condition> where;  // kEvent: the event is in scope
  std::string segment;                            // kSegmentEntered / kSegmentExited
  std::string stage;                              // kStageChanged; "" = any stage
  std::vector<std::string> trait;                 // kTraitChanged, kDate: path under traits
  Millis offset = 0;                              // kDate: + after, - before
  Where where_at;
};

enum class EntryRule { kOnce, kOncePer, kEveryTime };

enum class StepKind { kSend, kWait, kWaitFor, kBranch, kSplit, kUpdate, kWebhook, kExit };
std::string_view StepKindName(StepKind kind);  // "send", "wait", ... (stable, stored)

struct WaitSpec {
  enum class Kind { kDuration, kTimeOfDay, kDate };
  Kind kind = Kind::kDuration;
  Millis duration = 0;             // kDuration
  int minute_of_day = 0;           // kTimeOfDay: local time in the contact's time zone
  uint8_t weekdays = 0x7F;         // kTimeOfDay: bit 0 = Monday ... bit 6 = Sunday
  std::vector<std::string> trait;  // kDate: a date trait ...
  Millis offset = 0;               // ... plus this
};

struct BranchCase {
  std::shared_ptr<const rules::Condition> when;
  std::string when_text;
  std::string next;
  Where at;
};

struct Variant {
  std::string name;
  double weight = 0;
  std::string next;
  Where at;
};

struct Step {
  std::string id;
  StepKind kind = StepKind::kExit;
  Where at;
  std::string next;  // "" = the step written after this one; "end" = the journey ends
  Where next_at;

  // send
  std::string channel;
  std::string template_id;
  Where template_at;
  // wait
  WaitSpec wait;
  // wait_for: an event (optionally filtered) or a condition, until a timeout
  std::string wait_event;
  std::shared_ptr<const rules::Condition> wait_where;
  std::shared_ptr<const rules::Condition> wait_condition;
  Millis timeout = 0;
  std::string on_event, on_timeout;
  Where on_event_at, on_timeout_at;
  // branch
  std::vector<BranchCase> cases;
  std::string else_next;
  Where else_at;
  // split
  std::string experiment;  // named variants make an experiment
  std::vector<Variant> variants;
  // update
  std::string set_json = "{}";  // traits to set, as a JSON object
  std::vector<std::string> unset;
  std::vector<std::string> add_tags, remove_tags;
  double score = 0;
  // webhook (Liquid in url and body, rendered when delivered)
  std::string url;
  std::string method = "POST";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The most steps a journey may have (the engine keeps a step's index in 16 bits).
inline constexpr size_t kMaxSteps = 1000;

struct Journey {
  std::string id;
  std::string name;
  std::string goal;
  std::string description;
  Trigger trigger;
  EntryRule entry = EntryRule::kOnce;
  Millis entry_period = 0;  // kOncePer
  // At most this many of the contact's instances run at once (entry: every_time); an entry
  // past it is skipped. Bounds what one visitor's events (the write key is public) can start.
  int max_active = kDefaultMaxActive;
  static constexpr int kDefaultMaxActive = 100;
  static constexpr int kMaxMaxActive = 10000;
  std::shared_ptr<const rules::Condition> audience;
  std::string test_group;  // a segment id: only its members enter
  std::shared_ptr<const rules::Condition> exit_when;
  Millis max_lateness = 24LL * 3600 * 1000;
  std::vector<Step> steps;
  std::unordered_map<std::string, size_t> index;  // step id -> position

  // The step that follows `from` along a target ("" = the next written step, "end").
  // Returns nullopt for the end of the journey.
  std::optional<size_t> Resolve(size_t from, const std::string& target) const;
  // Every condition the journey evaluates (for adopting behavioural terms).
  std::vector<std::shared_ptr<const rules::Condition>> Conditions() const;
  // Segments it names (trigger, test group, conditions).
  std::vector<std::string> Segments() const;
  // Templates its send steps use.
  std::vector<std::string> Templates() const;
  // Topics its conditions name (subscribed(topic "...")).
  std::vector<std::string> Topics() const;
};

Result<Journey> ParseJourney(std::string_view text, std::string_view source,
                             std::optional<std::string_view> id = std::nullopt);

struct CheckOptions {
  // Answers whether a template exists; null skips the check.
  std::function<bool(const std::string&)> template_exists{};
  // Answers whether a segment exists; null skips the check.
  std::function<bool(const std::string&)> segment_exists{};
};

// Every problem of the journey's graph and references, each with its position.
std::vector<Status> CheckJourney(const Journey& journey, const CheckOptions& options);

// A header nudge sets on a webhook's request itself (Host, Content-Length, Transfer-Encoding,
// Connection, X-Nudge-*: its framing, id and signature), in any case: a step may not give one.
bool IsReservedWebhookHeader(std::string_view name);
// Whether a webhook header name is an HTTP field name (RFC 9110 token: letters, digits and
// !#$%&'*+-.^_`|~). Anything else (a space, a colon, a line break) could add header lines of
// its own, and is refused when the journey is saved and skipped at send.
bool IsHttpHeaderName(std::string_view name);

// Parses "3d before traits.trial_ends_at", "2h after traits.signup_at", "traits.birthday".
Result<std::pair<std::vector<std::string>, Millis>> ParseDateExpression(std::string_view text);

}  // namespace nudge::journey
