// Condition: one compiled expression of nudge's condition language (docs/conditions.md), used
// by segments, lead scoring, lifecycle stages, journey triggers, branches, waits and exits.
//
// Compile() parses and type-checks the text; errors are kInvalidArgument with where =
// "line:column" and a hint. A compiled Condition is immutable and shared (shared_ptr<const>);
// Matches() may be called from any thread and does not allocate: everything it reads comes
// from the Env, which the caller implements over its contact and event data.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "rules/value.h"

namespace nudge::rules {

// Where a path starts: the contact's traits, or the event in scope.
enum class Root : uint8_t { kTraits, kProperties, kContext, kEvent };

class Condition;

// A behavioural term: `event "X" where C within D`, `count(...)`, `sum(path of ...)`,
// `last(...)`/`first(...)`. Whoever keeps contacts keeps one aggregate per distinct key.
struct AggregateSpec {
  enum class Kind : uint8_t { kExists, kCount, kSum, kLast, kFirst };
  Kind kind = Kind::kExists;
  std::string event;                       // the event name
  std::shared_ptr<const Condition> where;  // evaluated with the event in scope; null = any
  std::optional<core::Millis> window;      // `within`; none = all time
  Root sum_root = Root::kProperties;       // kSum: what is summed, e.g. properties.revenue
  std::vector<std::string> sum_path;
  std::string key;  // canonical text: two specs with the same key are the same aggregate
  // Assigned by the aggregate keeper when it adopts the spec (an index into its slots).
  mutable int slot = -1;
};

// What a condition reads. Calls must not allocate. A contact-only Env returns kNull for the
// event roots.
class Env {
 public:
  virtual ~Env() = default;
  virtual core::Millis Now() const = 0;
  virtual Value Path(Root root, std::span<const std::string> path) const = 0;
  // kExists: kBool; kCount, kSum: kNumber; kLast, kFirst: kTime or kNull.
  virtual Value Aggregate(const AggregateSpec& spec) const = 0;
  // When the aggregate's value will next change by time alone (an event leaving its window).
  virtual std::optional<core::Millis> AggregateExpiry(const AggregateSpec& spec) const = 0;
  virtual bool InSegment(std::string_view segment) const = 0;
  virtual bool Subscribed(std::string_view channel, std::string_view topic) const = 0;
  virtual double Score() const = 0;
  virtual std::string_view Stage() const = 0;  // "" when none
  virtual core::Millis FirstSeen() const = 0;
  virtual core::Millis LastSeen() const = 0;
  // The contact's tags (a list of strings; an empty list when none) and the source it came
  // from (a string, or null): what `tags` and `source` read. An Env that keeps no contact
  // answers null.
  virtual Value Tags() const { return Value::Null(); }
  virtual Value Source() const { return Value::Null(); }
};

// A contact known by its traits alone, at a fixed time: no event, behaviour, segments,
// subscriptions, score, stage or seen times. Subclasses say what a trait path holds.
class TraitsEnv : public Env {
 public:
  explicit TraitsEnv(core::Millis now) : now_(now) {}
  virtual Value Trait(std::span<const std::string> path) const = 0;

  core::Millis Now() const final { return now_; }
  Value Path(Root root, std::span<const std::string> path) const final {
    return root == Root::kTraits ? Trait(path) : Value::Null();
  }
  Value Aggregate(const AggregateSpec&) const final { return Value::Null(); }
  std::optional<core::Millis> AggregateExpiry(const AggregateSpec&) const final {
    return std::nullopt;
  }
  bool InSegment(std::string_view) const final { return false; }
  bool Subscribed(std::string_view, std::string_view) const final { return false; }
  double Score() const final { return 0; }
  std::string_view Stage() const final { return {}; }
  core::Millis FirstSeen() const final { return 0; }
  core::Millis LastSeen() const final { return 0; }

 private:
  core::Millis now_;
};

struct CompileOptions {
  // Trigger filters and wait_for conditions have an event: properties.*, context.* and
  // event.* may appear at the top level, not only inside an event term's `where`.
  bool event_in_scope = false;
};

class Condition {
 public:
  static Result<std::shared_ptr<const Condition>> Compile(std::string_view text,
                                                          const CompileOptions& options = {});
  ~Condition();
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  bool Matches(const Env& env) const;

  // The earliest time after env.Now() at which the result could change with no new event or
  // trait change (a window sliding, `now` passing a boundary); nullopt when it cannot.
  std::optional<core::Millis> NextChange(const Env& env) const;

  const std::string& text() const;
  // The behavioural terms, each once (where clauses hold none: nesting is refused).
  const std::vector<std::shared_ptr<AggregateSpec>>& aggregates() const;
  // Segment ids named by `in segment "..."`.
  const std::vector<std::string>& segments() const;
  // Topics named by `subscribed(topic "...")`, each once.
  const std::vector<std::string>& topics() const;
  // True when some part reads the event in scope at the top level.
  bool reads_event() const;
  // What else the result depends on besides aggregates (bits of Reads): whoever re-evaluates
  // after a change skips the conditions that cannot have been affected by it.
  enum Reads : uint8_t {
    kReadsTraits = 1,
    kReadsSeen = 2,  // first_seen, last_seen
    kReadsScore = 4,
    kReadsStage = 8,
    kReadsSubscribed = 16,
    kReadsContact = 32,  // tags, source
  };
  uint8_t reads() const;
  // The trait paths it reads (`traits.plan` gives {"plan"}), each once, where clauses included.
  const std::vector<std::vector<std::string>>& trait_paths() const;
  // Numbers `score` is compared with (`score >= 50` gives 50): where a decaying score makes
  // the result change, for whoever schedules re-evaluation.
  const std::vector<double>& score_thresholds() const;

  struct Impl;  // defined in condition.cc; only Compile makes one
  explicit Condition(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Parses a duration literal ("30s", "15m", "2h", "7d", "2w") as the language does.
Result<core::Millis> ParseDuration(std::string_view text);

}  // namespace nudge::rules
