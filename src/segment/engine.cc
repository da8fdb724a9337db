#include "segment/engine.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <roaring/roaring.hh>
#include <set>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/chunked.h"
#include "core/json.h"
#include "core/string_map.h"
#include "core/time.h"
#include "rules/json_value.h"
#include "segment/trait_columns.h"

namespace nudge::segment {

using profile::ContactState;
using rules::AggregateSpec;
using rules::Root;
using rules::Value;
using store::ContactId;
using store::WorkspaceId;

namespace {

constexpr int kPreviewSlotBase = 1 << 24;

struct Segment {
  SegmentDef def;
  int64_t version = 0;
  Millis updated_at = 0;
  // Membership is one bit of each member's Runtime::in (bit 0-63), where evaluation finds it
  // in the cache line it reads anyway; beyond 64 segments in a workspace (bit -1), a bitmap.
  int bit = -1;
  Roaring members;     // only when bit < 0
  uint64_t count = 0;  // members

  bool computing = false;
};

// Per contact, per event rule: points awarded, for caps, decay and the breakdown.
struct RuleState {
  int rule = 0;
  double total = 0;  // no decay: the sum; half-life: the value at `ref`
  Millis ref = 0;
  std::vector<std::pair<Millis, double>> awards;  // inside max(cap period, expiry)
};

struct Runtime {
  std::vector<RuleState> rules;
  int stage = -1;
  Millis stage_since = 0;
  uint8_t qualification = 0;  // 0, 1 = MQL, 2 = SQL
  Millis wake = 0;            // the pending timer, 0 = none
  uint64_t in = 0;            // Segment::bit of each segment it belongs to
  bool live = false;          // false: an empty slot of Impl::runtime
};

struct Workspace {
  WorkspaceId id = 0;
  std::vector<std::unique_ptr<Segment>> segments;  // dependencies first
  core::StringMap<Segment*> by_id;
  ScoringDef scoring;
  StagesDef stages = DefaultStages();
  std::vector<double> score_thresholds;  // what conditions compare `score` with
  // Channels whose subscription needs a confirmation (policies double_opt_in): without a
  // recorded choice, a contact is not subscribed to them.
  std::set<std::string> double_opt_in;
  uint64_t bits_used = 0;  // Segment::bit taken
  // The trait paths its definitions read, as columns (see trait_columns.h).
  TraitColumns columns;

  Workspace() { CollectReach(); }

  // Registers the trait paths its segments, stages and scoring rules read; true when one is
  // new and the columns need filling.
  bool WantColumns() {
    auto want = [&](const rules::Condition& c) {
      for (const auto& p : c.trait_paths()) columns.Want(p);
    };
    for (const auto& s : segments) want(*s->def.condition);
    for (const auto& s : stages.stages) want(*s.when);
    for (const auto& r : scoring.rules)
      if (r.condition) want(*r.condition);
    return columns.NeedsFill();
  }

  void CollectThresholds() {
    std::set<double> all;
    auto add = [&](const rules::Condition& c) {
      for (double t : c.score_thresholds()) all.insert(t);
    };
    for (const auto& s : segments) add(*s->def.condition);
    for (const auto& s : stages.stages) add(*s.when);
    for (const auto& r : scoring.rules)
      if (r.condition) add(*r.condition);
    score_thresholds.assign(all.begin(), all.end());
    CollectReach();
  }

  // What an event can change, so that Evaluate after an event looks only at the segments,
  // score and stages that read something it changed (its aggregates, last_seen, the score, a
  // segment that changed before them). Trait and subscription changes, merges and timers
  // still evaluate everything.
  using NameSet = core::StringSet;
  struct Reach {
    // event name -> the segments reading it
    core::StringMap<std::vector<uint32_t>> by_event;
    std::vector<uint8_t> reads;               // per segment: Condition::reads()
    std::vector<std::vector<uint32_t>> deps;  // per segment: the segments it names
    NameSet score_events;
    uint8_t score_reads = 0;
    bool score_always = false;  // a scoring condition reads something an event cannot announce
    NameSet stage_events;
    uint8_t stage_reads = 0;
    bool stage_segments = false;
  } reach;

  // What one event name reaches, from the sets above and the aggregate registry: looked up
  // once per event instead of once per set (Impl::Plan). Emptied whenever the definitions or
  // the registry change.
  struct EventPlan {
    std::vector<int> slots;          // the aggregate slots it feeds (AggregateRegistry::SlotsFor)
    std::vector<uint32_t> segments;  // reach.by_event
    bool score_rule = false;         // an event rule of the scoring names it
    bool score_event = false;        // in reach.score_events
    bool stage_event = false;        // in reach.stage_events
  };
  static constexpr size_t kMaxPlans = 4096;  // distinct names remembered; others built each time
  core::StringMap<EventPlan> plans;
  EventPlan unremembered;

  void CollectReach() {
    using C = rules::Condition;
    reach = Reach{};
    plans.clear();
    for (size_t i = 0; i < segments.size(); ++i) {
      const C& c = *segments[i]->def.condition;
      reach.reads.push_back(c.reads());
      for (const auto& a : c.aggregates()) {
        auto& v = reach.by_event[a->event];
        if (v.empty() || v.back() != i) v.push_back(static_cast<uint32_t>(i));
      }
      std::vector<uint32_t> deps;
      for (const auto& d : c.segments())
        for (size_t j = 0; j < i; ++j)
          if (segments[j]->def.id == d) deps.push_back(static_cast<uint32_t>(j));
      reach.deps.push_back(std::move(deps));
    }
    for (const auto& r : scoring.rules) {
      if (!r.event.empty()) reach.score_events.insert(r.event);
      if (!r.condition) continue;
      reach.score_reads |= r.condition->reads();
      for (const auto& a : r.condition->aggregates()) reach.score_events.insert(a->event);
      if (!r.condition->segments().empty()) reach.score_always = true;
    }
    reach.score_events.insert("Score Adjusted");
    if (reach.score_reads & (C::kReadsStage | C::kReadsSubscribed)) reach.score_always = true;
    for (const auto& st : stages.stages) {
      reach.stage_reads |= st.when->reads();
      for (const auto& a : st.when->aggregates()) reach.stage_events.insert(a->event);
      if (!st.when->segments().empty()) reach.stage_segments = true;
    }
  }
};

// The event an evaluation follows (Evaluate looks only at what it can have changed).
struct EventCause {
  const Workspace::EventPlan* plan = nullptr;  // what its name reaches
  bool seen = false;  // a live event: last_seen (and perhaps first_seen) moved
};

// A derived event waiting to be stored once the evaluation that caused it is done.
struct Pending {
  ContactId contact;
  std::string name;
  std::string properties;  // a JSON object
  std::string key;         // makes the messageId deterministic
  bool stable = false;     // the messageId is the key's alone: emitting it again changes nothing
};

}  // namespace

// A subscription as a contact's state keeps it: "email" or "email/news", and its status.
profile::SubscriptionState StateOf(const store::Subscription& sub) {
  using S = profile::SubscriptionState::Status;
  return {sub.topic.empty() ? sub.channel : sub.channel + "/" + sub.topic,
          sub.status == "subscribed"     ? S::kSubscribed
          : sub.status == "unsubscribed" ? S::kUnsubscribed
                                         : S::kPending};
}

void SetSubscriptionState(profile::ContactState& st, const store::Subscription& sub) {
  profile::SubscriptionState state = StateOf(sub);
  for (auto& s : st.subscriptions)
    if (s.key == state.key) {
      s.status = state.status;
      return;
    }
  st.subscriptions.push_back(std::move(state));
}

bool SameSubscriptionState(const profile::ContactState& st, const store::Subscription& sub) {
  const profile::SubscriptionState state = StateOf(sub);
  for (const auto& s : st.subscriptions)
    if (s.key == state.key) return s.status == state.status;
  return false;
}

struct Engine::Impl {
  Impl(Engine& self, store::Store& store, profile::ContactCache& cache, const core::Clock& clock,
       core::MetricsRegistry* metrics, EngineOptions options)
      : self(self), store(store), cache(cache), clock(clock), options(options) {
    if (metrics) {
      evaluations = &metrics->GetCounter("nudge_segment_evaluations_total",
                                         "Contacts evaluated against their workspace's segments.");
      changes = &metrics->GetCounter("nudge_segment_changes_total", "Segment entries and exits.");
      reload_metric = &metrics->GetCounter(
          "nudge_engine_reloads_total",
          "Times an engine rebuilt its memory from the store after a write rolled back.",
          "{engine=\"segments\"}");
      metrics->AddGauge("nudge_queue_depth", "Work waiting in a queue.", "{queue=\"timers\"}",
                        [this] {
                          std::lock_guard lock(timer_mutex);
                          return static_cast<double>(timers.size());
                        });
    }
  }

  Engine& self;
  store::Store& store;
  profile::ContactCache& cache;
  const core::Clock& clock;
  EngineOptions options;
  core::Counter* evaluations = nullptr;
  core::Counter* changes = nullptr;

  std::unordered_map<WorkspaceId, std::unique_ptr<Workspace>>
      workspaces;                  // GUARDED_BY(cache.mutex)
  core::Chunked<Runtime> runtime;  // by contact id

  // Timers: (due, contact), min first. Stale entries are skipped (Runtime::wake differs).
  mutable std::mutex timer_mutex;
  std::condition_variable timer_cv;
  std::priority_queue<std::pair<Millis, ContactId>, std::vector<std::pair<Millis, ContactId>>,
                      std::greater<>>
      timers;             // GUARDED_BY(timer_mutex)
  bool stopping = false;  // GUARDED_BY(timer_mutex)
  std::thread timer_thread;

  // Background jobs: functions that run chunked writes until they return true (done).
  std::mutex job_mutex;
  std::condition_variable job_cv;
  std::deque<std::function<Status(bool& done)>> jobs;  // GUARDED_BY(job_mutex)
  int jobs_running = 0;                                // GUARDED_BY(job_mutex)
  std::thread job_thread;

  std::vector<Pending> pending;  // derived events of the current evaluation
  // The event being processed, for where clauses (null outside).
  const simdjson::dom::element* current_event = nullptr;

  // ---------------------------------------------------------------------------------------

  Workspace& Ws(WorkspaceId ws) {
    auto& slot = workspaces[ws];
    if (!slot) {
      slot = std::make_unique<Workspace>();
      slot->id = ws;
      for (auto& s : slot->stages.stages) Adopt(*s.when);
    }
    return *slot;
  }
  const Workspace* FindWs(WorkspaceId ws) const {
    auto it = workspaces.find(ws);
    return it == workspaces.end() ? nullptr : it->second.get();
  }

  // What an event name reaches in a workspace. The reference is valid until the next call
  // (past kMaxPlans names) or the next change of definitions.
  const Workspace::EventPlan& Plan(Workspace& ws, std::string_view name) {
    if (auto it = ws.plans.find(name); it != ws.plans.end()) return it->second;
    Workspace::EventPlan plan;
    plan.slots = cache.registry().SlotsFor(name);
    if (auto it = ws.reach.by_event.find(name); it != ws.reach.by_event.end())
      plan.segments = it->second;
    for (const ScoreRule& r : ws.scoring.rules)
      plan.score_rule = plan.score_rule || (!r.event.empty() && r.event == name);
    plan.score_event = ws.reach.score_events.contains(name);
    plan.stage_event = ws.reach.stage_events.contains(name);
    if (ws.plans.size() >= Workspace::kMaxPlans) return ws.unremembered = std::move(plan);
    return ws.plans.emplace(std::string(name), std::move(plan)).first->second;
  }
  // The aggregate registry changed: every plan may name other slots now.
  void ForgetPlans() {
    for (auto& [id, ws] : workspaces) ws->plans.clear();
  }

  Runtime& Rt(ContactId id) {
    Runtime& rt = runtime.Make(static_cast<size_t>(id));
    rt.live = true;
    return rt;
  }
  // The contact's runtime, or null when it has none.
  const Runtime* FindRt(ContactId id) const {
    const Runtime* rt = runtime.Find(static_cast<size_t>(id));
    return rt && rt->live ? rt : nullptr;
  }
  Runtime* FindRtMutable(ContactId id) { return const_cast<Runtime*>(FindRt(id)); }
  // ---- tags and source ----

  // A contact's tags and source, for the contacts that have any (most have none): what `tags`
  // and `source` read. `values` views `tags` (built after it, never moved: map nodes stay).
  struct Labels {
    std::string text;  // the tags as stored (a JSON array)
    std::vector<std::string> tags;
    std::vector<rules::Value> values;
    std::optional<std::string> source;
  };
  std::unordered_map<ContactId, Labels> labels;

  // Records the contact's tags and source; true when they changed. The tags are parsed only
  // when their text changed: a contact's every other change passes here too.
  bool SetLabels(const store::Contact& c) {
    auto it = labels.find(c.id);
    if ((c.tags.empty() || c.tags == "[]") && !c.source) {
      if (it == labels.end()) return false;
      labels.erase(it);
      return true;
    }
    if (it != labels.end() && it->second.text == c.tags && it->second.source == c.source)
      return false;
    Labels& l = labels[c.id];
    l.text = c.tags;
    l.source = c.source;
    l.tags.clear();
    if (const nlohmann::json parsed = nlohmann::json::parse(c.tags, nullptr, false);
        parsed.is_array())
      for (const auto& t : parsed)
        if (t.is_string()) l.tags.push_back(t.get<std::string>());
    l.values.clear();
    for (const std::string& t : l.tags) l.values.push_back(rules::Value::String(t));
    return true;
  }

  // The contact is gone from the workspace (erased, or merged into another): out of its
  // segments' bitmaps, its trait columns and its labels. The runtime is the caller's (ForgetRt).
  void Forget(WorkspaceId wsid, ContactId id) {
    labels.erase(id);
    auto it = workspaces.find(wsid);
    if (it == workspaces.end()) return;
    for (auto& s : it->second->segments) MarkMember(*s, id, false);
    it->second->columns.Erase(id);
  }
  void ForgetRt(ContactId id) {
    if (Runtime* rt = FindRtMutable(id)) *rt = Runtime{};
  }

  // ---- scores ----

  double RuleValue(const ScoringDef& scoring, const RuleState& r, Millis now) const {
    switch (scoring.decay) {
      case ScoringDef::Decay::kNone:
        return r.total;
      case ScoringDef::Decay::kHalfLife:
        return r.total * std::exp2(-static_cast<double>(now - r.ref) /
                                   static_cast<double>(scoring.decay_period));
      case ScoringDef::Decay::kExpire: {
        double sum = 0;
        for (const auto& [at, points] : r.awards)
          if (at > now - scoring.decay_period) sum += points;
        return sum;
      }
    }
    return 0;
  }

  static constexpr int kAdjustmentsRule = -1;  // points journeys give (Score Adjusted)

  void AwardPoints(const ScoringDef& scoring, Runtime& rt, int rule_index, Millis at,
                   double points) {
    auto it = std::find_if(rt.rules.begin(), rt.rules.end(),
                           [&](const RuleState& r) { return r.rule == rule_index; });
    if (it == rt.rules.end()) {
      rt.rules.push_back({rule_index, 0, at, {}});
      it = rt.rules.end() - 1;
    }
    if (scoring.decay == ScoringDef::Decay::kHalfLife) {
      it->total = RuleValue(scoring, *it, at) + points;
      it->ref = at;
    } else {
      it->total += points;
    }
    if (scoring.decay == ScoringDef::Decay::kExpire) {
      it->awards.emplace_back(at, points);
      std::erase_if(it->awards,
                    [&](const auto& a) { return a.first <= at - scoring.decay_period; });
    }
  }

  void Award(const ScoringDef& scoring, Runtime& rt, int rule_index, Millis at) {
    const ScoreRule& rule = scoring.rules[static_cast<size_t>(rule_index)];
    auto it = std::find_if(rt.rules.begin(), rt.rules.end(),
                           [&](const RuleState& r) { return r.rule == rule_index; });
    if (it == rt.rules.end()) {
      rt.rules.push_back({rule_index, 0, at, {}});
      it = rt.rules.end() - 1;
    }
    RuleState& st = *it;
    double points = rule.points;
    if (rule.cap_points) {
      double in_period = 0;
      for (const auto& [t, p] : st.awards)
        if (t > at - rule.cap_period && t <= at) in_period += p;
      points = std::min(points, std::max(0.0, *rule.cap_points - in_period));
      if (points == 0 && rule.points > 0) return;
    }
    if (scoring.decay == ScoringDef::Decay::kHalfLife) {
      st.total = RuleValue(scoring, st, at) + points;
      st.ref = at;
    } else {
      st.total += points;
    }
    const Millis keep =
        std::max(rule.cap_points ? rule.cap_period : 0,
                 scoring.decay == ScoringDef::Decay::kExpire ? scoring.decay_period : 0);
    if (keep > 0) {
      st.awards.emplace_back(at, points);
      std::erase_if(st.awards, [&](const auto& a) { return a.first <= at - keep; });
    }
  }

  // ---- evaluation ----

  class ContactEnv final : public rules::Env {
   public:
    ContactEnv(const Impl& impl, const Workspace& ws, ContactId id, const ContactState& state,
               const Runtime* rt, Millis now)
        : impl_(impl), ws_(ws), id_(id), state_(state), rt_(rt), now_(now) {}

    // Aggregates for preview terms (slots from kPreviewSlotBase), kept aside.
    const std::unordered_map<ContactId, profile::ContactAggregates>* preview = nullptr;
    // `event "X" where C` without a window means "the event in scope is an X matching C".
    bool event_terms_mean_this_event = false;

    Millis Now() const override { return now_; }

    Value Tags() const override {
      auto it = impl_.labels.find(id_);
      if (it == impl_.labels.end()) return Value::List(nullptr, 0);
      return Value::List(it->second.values.data(), static_cast<uint32_t>(it->second.values.size()));
    }
    Value Source() const override {
      auto it = impl_.labels.find(id_);
      return it == impl_.labels.end() || !it->second.source ? Value::Null()
                                                            : Value::String(*it->second.source);
    }

    Value Path(Root root, std::span<const std::string> path) const override {
      if (root == Root::kTraits) {
        // A path kept as a column is one array read; others come from the parsed document.
        if (const int col = ws_.columns.Find(path); col >= 0)
          return ws_.columns.Decode(col, ws_.columns.Code(col, id_));
        if (!traits_parsed_) {
          thread_local simdjson::dom::parser parser;
          traits_ok_ = parser.parse(state_.traits).get(traits_) == simdjson::SUCCESS;
          traits_parsed_ = true;
        }
        return traits_ok_ ? rules::Lookup(traits_, path) : Value::Null();
      }
      const simdjson::dom::element* event = impl_.current_event;
      if (!event) return Value::Null();
      if (root == Root::kEvent) {
        static const std::string kName = "event", kType = "type", kTime = "timestamp",
                                 kId = "messageId";
        const std::string& field = path[0] == "name"        ? kName
                                   : path[0] == "type"      ? kType
                                   : path[0] == "timestamp" ? kTime
                                                            : kId;
        Value v = rules::Lookup(*event, std::span<const std::string>(&field, 1));
        if (path[0] == "timestamp" && v.type == rules::Type::kString) {
          if (auto t = core::TryParseIso8601(v.str)) return Value::Time(*t);
        }
        return v;
      }
      simdjson::dom::element sub;
      if ((*event)[root == Root::kProperties ? "properties" : "context"].get(sub) !=
          simdjson::SUCCESS)
        return Value::Null();
      return rules::Lookup(sub, path);
    }

    const profile::AggregateState* State(const AggregateSpec& spec) const {
      if (spec.slot >= kPreviewSlotBase) {
        if (!preview) return nullptr;
        auto it = preview->find(id_);
        return it == preview->end() ? nullptr : it->second.Find(spec.slot);
      }
      return spec.slot < 0 ? nullptr : state_.aggregates.Find(spec.slot);
    }

    Value Aggregate(const AggregateSpec& spec) const override {
      if (event_terms_mean_this_event && spec.kind == AggregateSpec::Kind::kExists &&
          !spec.window) {
        const simdjson::dom::element* event = impl_.current_event;
        if (!event) return Value::Bool(false);
        std::string_view name;
        if ((*event)["event"].get(name) != simdjson::SUCCESS || name != spec.event)
          return Value::Bool(false);
        return Value::Bool(!spec.where || spec.where->Matches(*this));
      }
      if (const auto* s = State(spec)) return s->ValueAt(spec, now_);
      switch (spec.kind) {
        case AggregateSpec::Kind::kExists:
          return Value::Bool(false);
        case AggregateSpec::Kind::kCount:
        case AggregateSpec::Kind::kSum:
          return Value::Number(0);
        default:
          return Value::Null();
      }
    }
    std::optional<Millis> AggregateExpiry(const AggregateSpec& spec) const override {
      const auto* s = State(spec);
      return s ? s->Expiry(spec, now_) : std::nullopt;
    }
    bool InSegment(std::string_view segment) const override {
      auto it = ws_.by_id.find(segment);
      return it != ws_.by_id.end() && impl_.IsMember(*it->second, id_, rt_);
    }
    bool Subscribed(std::string_view channel, std::string_view topic) const override {
      // A recorded choice wins: the topic's, else the channel's. Without one, a contact is
      // subscribed to a channel it can be reached on and has not opted out of in its traits
      // (traits.unsubscribed), which is how lists imported with consent start.
      using S = profile::SubscriptionState::Status;
      auto recorded = [&](std::string_view key) -> std::optional<S> {
        for (const auto& s : state_.subscriptions)
          if (s.key == key) return s.status;
        return std::nullopt;
      };
      const std::string channel_key(channel);
      if (!topic.empty()) {
        if (auto t = recorded(channel_key + "/" + std::string(topic))) return *t == S::kSubscribed;
      }
      if (auto c = recorded(channel_key)) {
        if (*c != S::kSubscribed) return false;
        if (topic.empty()) return true;
      } else if (ws_.double_opt_in.count(channel_key)) {
        return false;  // never confirmed
      }
      const std::string unsub = "unsubscribed";
      if (Path(Root::kTraits, std::span<const std::string>(&unsub, 1)).truthy()) return false;
      const std::string field = channel == "sms" ? "phone" : "email";
      const Value v = Path(Root::kTraits, std::span<const std::string>(&field, 1));
      return channel == "webhook" || channel == "push" ||
             (v.type == rules::Type::kString && !v.str.empty());
    }
    double Score() const override {
      // A scoring rule's condition that reads `score` sees the points of event rules only.
      if (in_score_) return impl_.ScoreOf(ws_, rt_, now_, nullptr);
      in_score_ = true;
      const double s = impl_.ScoreOf(ws_, rt_, now_, this);
      in_score_ = false;
      return s;
    }
    std::string_view Stage() const override {
      if (!rt_ || rt_->stage < 0 || static_cast<size_t>(rt_->stage) >= ws_.stages.stages.size())
        return {};
      return ws_.stages.stages[static_cast<size_t>(rt_->stage)].name;
    }
    Millis FirstSeen() const override { return state_.first_seen; }
    Millis LastSeen() const override { return state_.last_seen; }

    ContactId id() const { return id_; }

   private:
    const Impl& impl_;
    const Workspace& ws_;
    ContactId id_;
    const ContactState& state_;
    const Runtime* rt_;
    Millis now_;
    mutable bool in_score_ = false;
    mutable bool traits_parsed_ = false;
    mutable bool traits_ok_ = false;
    mutable simdjson::dom::element traits_;
  };

  // Event-rule points (decayed) plus condition-rule points that hold now.
  // env null: event-rule points only.
  double ScoreOf(const Workspace& ws, const Runtime* rt, Millis now, const rules::Env* env) const {
    double score = 0;
    if (rt)
      for (const RuleState& r : rt->rules) score += RuleValue(ws.scoring, r, now);
    if (env)
      for (const ScoreRule& rule : ws.scoring.rules)
        if (rule.condition && rule.condition->Matches(*env)) score += rule.points;
    return score;
  }

  ScoreView ScoreBreakdown(const Workspace& ws, const Runtime* rt, const rules::Env& env,
                           Millis now) const {
    ScoreView v;
    for (size_t i = 0; i < ws.scoring.rules.size(); ++i) {
      const ScoreRule& rule = ws.scoring.rules[i];
      double points = 0;
      if (rule.condition) {
        if (rule.condition->Matches(env)) points = rule.points;
      } else if (rt) {
        for (const RuleState& r : rt->rules)
          if (r.rule == static_cast<int>(i)) points = RuleValue(ws.scoring, r, now);
      }
      if (points != 0) v.by_rule.emplace_back(rule.id, std::round(points * 100) / 100);
      v.score += points;
    }
    if (rt)
      for (const RuleState& r : rt->rules)
        if (r.rule == kAdjustmentsRule) {
          const double points = RuleValue(ws.scoring, r, now);
          if (points != 0) v.by_rule.emplace_back("adjustments", std::round(points * 100) / 100);
          v.score += points;
        }
    v.score = std::round(v.score * 100) / 100;
    return v;
  }

  static uint8_t Qualification(const ScoringDef& s, double score) {
    if (s.sql && score >= *s.sql) return 2;
    if (s.mql && score >= *s.mql) return 1;
    return 0;
  }

  // When the decayed score next crosses a threshold that matters.
  std::optional<Millis> ScoreWake(const Workspace& ws, const Runtime* rt, Millis now,
                                  double score) const {
    if (!rt || rt->rules.empty()) return std::nullopt;
    const ScoringDef& s = ws.scoring;
    if (s.decay == ScoringDef::Decay::kExpire) {
      std::optional<Millis> best;
      for (const RuleState& r : rt->rules)
        for (const auto& [at, p] : r.awards) {
          const Millis leaves = at + s.decay_period;
          if (leaves > now && (!best || leaves < *best)) best = leaves;
        }
      return best;
    }
    if (s.decay != ScoringDef::Decay::kHalfLife) return std::nullopt;
    // score(t) = fixed + decaying * 2^(-(t-now)/h); find the first threshold crossed.
    double decaying = 0;
    for (const RuleState& r : rt->rules) decaying += RuleValue(s, r, now);
    const double fixed = score - decaying;
    std::optional<Millis> best;
    auto consider = [&](double threshold) {
      const double ratio = decaying / (threshold - fixed);
      if (!(ratio > 1)) return;
      const Millis t =
          now +
          static_cast<Millis>(std::ceil(static_cast<double>(s.decay_period) * std::log2(ratio))) +
          1;
      if (!best || t < *best) best = t;
    };
    if (s.mql) consider(*s.mql);
    if (s.sql) consider(*s.sql);
    for (const double t : ws.score_thresholds) consider(t);
    return best;
  }

  void Schedule(ContactId id, Runtime& rt, std::optional<Millis> wake) {
    const Millis w = wake.value_or(0);
    if (rt.wake == w) return;
    rt.wake = w;
    if (!w) return;
    std::lock_guard lock(timer_mutex);
    const bool earlier = timers.empty() || w < timers.top().first;
    timers.emplace(w, id);
    if (earlier) timer_cv.notify_all();
  }

  // ---- membership ----

  bool IsMember(const Segment& seg, ContactId id, const Runtime* rt) const {
    if (seg.bit >= 0) return rt && ((rt->in >> seg.bit) & 1);
    return seg.members.contains(static_cast<uint32_t>(id));
  }
  void MarkMember(Segment& seg, ContactId id, bool in) {
    bool moved = false;
    if (seg.bit < 0) {
      const auto key = static_cast<uint32_t>(id);
      moved = in ? seg.members.addChecked(key) : seg.members.removeChecked(key);
    } else {
      const uint64_t mask = uint64_t{1} << seg.bit;
      Runtime* rt = in ? &Rt(id) : FindRtMutable(id);
      if (rt && ((rt->in & mask) != 0) != in) {
        rt->in ^= mask;
        moved = true;
      }
    }
    if (moved) in ? ++seg.count : --seg.count;
  }
  void AssignBit(Workspace& ws, Segment& seg) {
    seg.bit = -1;
    if (~ws.bits_used == 0) return;
    seg.bit = std::countr_one(ws.bits_used);
    ws.bits_used |= uint64_t{1} << seg.bit;
  }
  // The segment is going away (deleted, or replaced by a new definition): its bit is cleared
  // from its members and freed. One pass over every runtime (the same bit may mean another
  // segment in another workspace): redefinitions are rare, events are not.
  void ReleaseBit(Workspace& ws, Segment& seg) {
    if (seg.bit < 0) return;
    const uint64_t mask = uint64_t{1} << seg.bit;
    if (seg.count > 0)  // no member, no bit set anywhere
      runtime.ForEach([&](size_t id, Runtime& rt) {
        if (!rt.live || !(rt.in & mask)) return;
        const ContactState* st = cache.Get(static_cast<ContactId>(id));
        if (st && st->workspace == ws.id) rt.in &= ~mask;
      });
    ws.bits_used &= ~mask;
    seg.bit = -1;
    seg.count = 0;
  }

  Status SetMember(store::WriteTxn& txn, WorkspaceId wsid, Segment& seg, ContactId id, bool in,
                   Millis now, bool silent) {
    MarkMember(seg, id, in);
    if (in) {
      NUDGE_TRY(txn.AddSegmentMember({wsid, seg.def.id, id, now}));
    } else {
      NUDGE_TRY(txn.RemoveSegmentMember(wsid, seg.def.id, id));
    }
    if (changes) changes->Add();
    if (!silent && !seg.computing) {
      std::string props = "{\"segment\":";
      core::AppendJsonString(props, seg.def.id);
      props += ",\"segment_name\":";
      core::AppendJsonString(props, seg.def.name);
      props += '}';
      pending.push_back(
          {id, in ? "Segment Entered" : "Segment Exited", std::move(props), seg.def.id});
    }
    return Status::Ok();
  }

  // Re-evaluates one contact: score, segments (dependencies first), stage, and its timer.
  // `only` limits the segments evaluated (a background computation); silent: no events.
  //
  // `cause`: the evaluation follows that event only. Score, segments and stages that read
  // nothing the event changed keep their result; the pending timer stays (at worst it wakes
  // a full evaluation a little early).
  Status Evaluate(store::WriteTxn& txn, ContactId id, bool silent, const Segment* only = nullptr,
                  const EventCause* cause = nullptr) {
    using C = rules::Condition;
    ContactState* state = cache.Get(id);
    if (!state) return Status::Ok();
    Workspace& ws = Ws(state->workspace);
    Runtime& rt = Rt(id);
    const Millis now = clock.NowMillis();
    ContactEnv env(*this, ws, id, *state, &rt, now);
    if (evaluations) evaluations->Add();

    std::optional<Millis> wake;
    if (cause && rt.wake) wake = rt.wake;
    auto fold = [&](std::optional<Millis> t) {
      if (t && *t > now && (!wake || *t < *wake)) wake = t;
    };
    const Workspace::Reach& reach = ws.reach;
    const bool score_moved = !cause || reach.score_always || cause->plan->score_event ||
                             (cause->seen && (reach.score_reads & C::kReadsSeen));
    // Whether what a condition reads besides its aggregates (Condition::reads) may have moved
    // with the event.
    auto reads_moved = [&](uint8_t reads) {
      return (reads & (C::kReadsStage | C::kReadsSubscribed)) ||
             (cause->seen && (reads & C::kReadsSeen)) || (score_moved && (reads & C::kReadsScore));
    };

    // Score first: segments and stages may read it.
    if (score_moved) {
      const double score = env.Score();
      for (const ScoreRule& rule : ws.scoring.rules)
        if (rule.condition) fold(rule.condition->NextChange(env));
      fold(ScoreWake(ws, &rt, now, score));
      const uint8_t qual = Qualification(ws.scoring, score);
      if (qual > rt.qualification && !silent) {
        for (uint8_t level = rt.qualification + 1; level <= qual; ++level)
          pending.push_back(
              {id, "Lead Qualified",
               nlohmann::json{{"level", level == 1 ? "MQL" : "SQL"}, {"score", score}}.dump(),
               level == 1 ? "mql" : "sql"});
      }
      rt.qualification = qual;
    }

    // Which segments to look at after an event; `changed` marks those whose membership moved.
    std::vector<uint8_t>& look = scratch_look;
    std::vector<uint8_t>& changed = scratch_changed;
    bool any_changed = false;
    if (cause) {
      look.assign(ws.segments.size(), 0);
      changed.assign(ws.segments.size(), 0);
      for (uint32_t i : cause->plan->segments) look[i] = 1;
    }
    for (size_t i = 0; i < ws.segments.size(); ++i) {
      Segment& seg = *ws.segments[i];
      if (only && &seg != only) {
        fold(seg.def.condition->NextChange(env));
        continue;
      }
      if (cause && !look[i] && i < reach.reads.size()) {
        bool affected = reads_moved(reach.reads[i]);
        for (uint32_t d : reach.deps[i]) affected = affected || changed[d];
        if (!affected) continue;
      }
      const bool in = seg.def.condition->Matches(env);
      fold(seg.def.condition->NextChange(env));
      if (in != IsMember(seg, id, &rt)) {
        NUDGE_TRY(SetMember(txn, state->workspace, seg, id, in, now, silent));
        if (cause) changed[i] = 1;
        any_changed = true;
      }
    }

    const bool stages_moved = !cause || reads_moved(reach.stage_reads) ||
                              cause->plan->stage_event || (any_changed && reach.stage_segments);
    if (!only && stages_moved) {
      const auto& stages = ws.stages.stages;
      int target = -1;
      for (int i = static_cast<int>(stages.size()) - 1; i >= 0; --i) {
        fold(stages[static_cast<size_t>(i)].when->NextChange(env));
        if (target < 0 && stages[static_cast<size_t>(i)].when->Matches(env)) target = i;
      }
      if (!ws.stages.moves_back && target < rt.stage) target = rt.stage;
      if (target != rt.stage && target >= 0) {
        const std::string previous = rt.stage >= 0 && static_cast<size_t>(rt.stage) < stages.size()
                                         ? stages[static_cast<size_t>(rt.stage)].name
                                         : "";
        NUDGE_TRY(
            txn.SetContactStage({id, stages[static_cast<size_t>(target)].name, previous, now}));
        if (!silent) {
          const std::string& name = stages[static_cast<size_t>(target)].name;
          std::string props = "{\"previous\":";
          if (previous.empty()) {
            props += "null";
          } else {
            core::AppendJsonString(props, previous);
          }
          props += ",\"stage\":";
          core::AppendJsonString(props, name);
          props += '}';
          pending.push_back({id, "Stage Changed", std::move(props), name});
        }
        rt.stage = target;
        rt.stage_since = now;
      }
    }
    Schedule(id, rt, wake);
    return Status::Ok();
  }

  // Updates the aggregates and scores an event feeds. `slots_only` restricts to some slots (a
  // backfill) and skips scoring.
  // slots_only: feed only these aggregate slots (null: all); scores: award score points.
  // Returns what the event's name reaches (Plan), valid until the next Plan.
  const Workspace::EventPlan& Feed(
      const store::Event& e, ContactId id, ContactState& state, Runtime* rt,
      const std::vector<int>* slots_only, bool scores,
      std::unordered_map<ContactId, profile::ContactAggregates>* preview_out = nullptr,
      const std::vector<std::shared_ptr<AggregateSpec>>* preview_specs = nullptr) {
    Workspace& ws = Ws(state.workspace);
    const Workspace::EventPlan& plan = Plan(ws, e.name);
    const std::vector<int>& slots = plan.slots;
    const bool any_rule = scores && !preview_out && plan.score_rule;
    bool any_preview = false;
    if (preview_specs)
      for (const auto& s : *preview_specs) any_preview = any_preview || s->event == e.name;
    static constexpr std::string_view kScoreAdjusted = "Score Adjusted";
    const bool adjusted = std::string_view(e.name) == kScoreAdjusted;
    if (slots.empty() && !any_rule && !any_preview && !adjusted) return plan;
    for (int slot : slots)
      if (const profile::AggregateState* a = state.aggregates.Find(slot)) a->Prefetch();

    thread_local simdjson::dom::parser parser;
    simdjson::dom::element body;
    if (parser.parse(e.body).get(body) != simdjson::SUCCESS) return plan;
    current_event = &body;
    ContactEnv env(*this, ws, id, state, rt, e.timestamp);
    auto amount = [&](const AggregateSpec& spec) {
      if (spec.kind != AggregateSpec::Kind::kSum) return 0.0;
      const Value v = env.Path(spec.sum_root, spec.sum_path);
      return v.type == rules::Type::kNumber ? v.num : 0.0;
    };
    if (preview_out) {
      for (const auto& spec : *preview_specs) {
        if (spec->event != e.name || (spec->where && !spec->where->Matches(env))) continue;
        (*preview_out)[id].Get(spec->slot).Add(*spec, e.timestamp, amount(*spec));
      }
      current_event = nullptr;
      return plan;
    }
    for (int slot : slots) {
      if (slots_only &&
          std::find(slots_only->begin(), slots_only->end(), slot) == slots_only->end())
        continue;
      const AggregateSpec& spec = *cache.registry().spec(slot);
      if (spec.where && !spec.where->Matches(env)) continue;
      state.aggregates.Get(slot).Add(spec, e.timestamp, amount(spec));
      state.aggregates.Get(slot).Prune(spec, clock.NowMillis());
    }
    if (scores && rt && adjusted && !preview_out) {
      // Points a journey gives or takes (update: { score: N }): a rule of their own.
      simdjson::dom::element points;
      double p = 0;
      if (body["properties"]["points"].get(points) == simdjson::SUCCESS &&
          points.get_double().get(p) == simdjson::SUCCESS && p != 0)
        AwardPoints(ws.scoring, *rt, kAdjustmentsRule, e.timestamp, p);
    }
    if (any_rule && rt) {
      for (size_t i = 0; i < ws.scoring.rules.size(); ++i) {
        const ScoreRule& r = ws.scoring.rules[i];
        if (r.event.empty() || r.event != e.name || (r.where && !r.where->Matches(env))) continue;
        Award(ws.scoring, *rt, static_cast<int>(i), e.timestamp);
      }
    }
    current_event = nullptr;
    return plan;
  }

  // Stores the derived events of the last evaluation and processes them in turn.
  Status FlushPending(store::WriteTxn& txn, int depth, const std::string& cause) {
    if (pending.empty()) return Status::Ok();
    std::vector<Pending> batch = std::exchange(pending, {});
    const Millis now = clock.NowMillis();
    for (Pending& p : batch) {
      const ContactState* state = cache.Get(p.contact);
      if (!state) continue;
      store::Event e;
      e.workspace = state->workspace;
      e.contact = p.contact;
      e.type = "track";
      e.name = p.name;
      e.timestamp = now;
      e.received_at = now;
      // Stable ids are checked for duplicates; the others end in their cause, are unique by
      // construction and are not (store::kUncheckedDerivedPrefix).
      e.message_id =
          Engine::DerivedEventId(p.stable ? store::kDerivedPrefix : store::kUncheckedDerivedPrefix,
                                 p.name, p.key, p.contact);
      if (!p.stable) e.message_id += ":" + cause;
      // Written by hand (keys in the order a JSON document would sort them): derived events
      // are most of what a busy segment writes.
      const std::string at = core::FormatIso8601(now);
      e.body.reserve(160 + p.name.size() + e.message_id.size() + p.properties.size());
      e.body = R"({"context":{"library":{"name":"nudge"}},"event":)";
      core::AppendJsonString(e.body, p.name);
      e.body += ",\"messageId\":";
      core::AppendJsonString(e.body, e.message_id);
      e.body += ",\"properties\":";
      e.body += p.properties;
      e.body += ",\"receivedAt\":\"";
      e.body += at;
      e.body += "\",\"timestamp\":\"";
      e.body += at;
      e.body += "\",\"type\":\"track\"}";
      NUDGE_ASSIGN_OR_RETURN(bool inserted, txn.InsertEvent(e));
      if (!inserted) continue;
      NUDGE_TRY(ProcessEvent(txn, e, depth + 1));
    }
    return Status::Ok();
  }

  int current_depth = 0;
  std::vector<uint8_t> scratch_look, scratch_changed;  // Evaluate's, kept to avoid allocating

  Status ProcessEvent(store::WriteTxn& txn, const store::Event& e, int depth) {
    const int saved_depth = current_depth;
    current_depth = depth;
    Status s = ProcessEventAt(txn, e, depth);
    current_depth = saved_depth;
    return s;
  }

  Status ProcessEventAt(store::WriteTxn& txn, const store::Event& e, int depth) {
    const ContactId id = cache.Resolve(e.contact);
    ContactState* state = cache.Get(id);
    if (state) {
      // The aggregates are fetched from memory while the event's plan is looked up: they are
      // cold for a random contact among millions (the state and runtime were hinted earlier:
      // Engine::Prefetch).
      Runtime& rt = Rt(id);
      state->aggregates.Prefetch();
      // What nudge derives (Segment Entered, ...) is not the contact being seen.
      EventCause cause;
      if (!std::string_view(e.message_id).starts_with(store::kDerivedPrefix))
        cause.seen = cache.Widen(id, e.timestamp);
      cause.plan = &Feed(e, id, *state, &rt, nullptr, true);
      NUDGE_TRY(Evaluate(txn, id, /*silent=*/false, nullptr, &cause));
    }
    if (self.downstream_) NUDGE_TRY(self.downstream_->OnEvent(txn, e));
    if (depth >= options.max_cascade) {
      if (!pending.empty())
        spdlog::warn("derived events stopped after {} levels for contact {}", depth, id);
      pending.clear();
      return Status::Ok();
    }
    if (pending.empty()) return Status::Ok();
    return FlushPending(txn, depth, std::to_string(e.id));
  }

  // What made a derived event, for its messageId: unique across restarts (the time) and within
  // a millisecond (a sequence).
  std::string Cause(std::string_view what) {
    return std::string(what) + std::to_string(clock.NowMillis()) + "." + std::to_string(++sequence);
  }
  uint64_t sequence = 0;

  // Every write that changes memory starts here (cache.mutex held). Should the write roll back,
  // memory no longer matches the store: the next write rebuilds it from the store first,
  // reading through its own transaction, which holds what the writes before it in its group
  // changed (a reader's connection would see only what is committed).
  Status Begin(store::WriteTxn& txn) {
    if (needs_reload) {
      spdlog::warn("a write rolled back; reloading contacts, segments and scores from the store");
      reloads.fetch_add(1);
      if (reload_metric) reload_metric->Add();
      NUDGE_TRY(LoadState(&txn));
      needs_reload = false;
    }
    txn.OnRollback([this] { needs_reload = true; });
    return Status::Ok();
  }
  // Begin for a write that may be refused: a refusal changes nothing, so it is checked before
  // Begin registers the rollback (which reloads everything: seconds at a million contacts), and
  // again after it, should Begin have reloaded.
  Status BeginUnless(store::WriteTxn& txn, const std::function<Status()>& refusal) {
    NUDGE_TRY(refusal());
    NUDGE_TRY(Begin(txn));
    return refusal();
  }
  // A refusal: kNotFound unless the contact (or the one it was merged into) is known.
  Status KnownContact(ContactId id) {
    if (cache.Get(cache.Resolve(id))) return Status::Ok();
    return Status::NotFound("no contact " + std::to_string(id));
  }
  bool needs_reload = false;
  std::atomic<uint64_t> reloads{0};
  core::Counter* reload_metric = nullptr;

  // Reads through `within` when given (a write's transaction), else in reads of its own.
  Status LoadState(store::ReadTxn* within = nullptr);

  // ---- definitions ----

  Status Order(Workspace& ws) {
    // Dependencies first (a segment after every segment it names); cycles refused earlier.
    std::vector<std::unique_ptr<Segment>> ordered;
    std::set<std::string> placed;
    while (ordered.size() < ws.segments.size()) {
      bool progress = false;
      for (auto& s : ws.segments) {
        if (!s || placed.count(s->def.id)) continue;
        bool ready = true;
        for (const auto& dep : s->def.condition->segments())
          if (ws.by_id.count(dep) && !placed.count(dep)) ready = false;
        if (!ready) continue;
        placed.insert(s->def.id);
        ordered.push_back(std::move(s));
        progress = true;
      }
      if (!progress) return Status::Internal("segment dependencies form a cycle");
    }
    ws.segments = std::move(ordered);
    ws.CollectThresholds();
    SyncColumns(ws);
    return Status::Ok();
  }

  // Fills the columns of trait paths the definitions started reading (one parse per contact).
  void SyncColumns(Workspace& ws) {
    if (!ws.WantColumns()) return;
    cache.ForEach(ws.id,
                  [&](ContactId id, const ContactState& st) { ws.columns.Fill(id, st.traits); });
    ws.columns.MarkFilled();
  }

  // Stages and scoring rules may name only segments that exist (as segments and journeys).
  Status CheckNamedSegments(WorkspaceId wsid, const rules::Condition& c, const std::string& what,
                            const std::string& where) const {
    const Workspace* ws = FindWs(wsid);
    for (const auto& dep : c.segments())
      if (!ws || !ws->by_id.count(dep))
        return Status::Invalid(what + ": refers to the unknown segment \"" + dep + "\"", where);
    return Status::Ok();
  }

  // The first problem of its references (SegmentReferenceProblems), at the condition's
  // position in its document when it has one.
  Status CheckReferences(const Workspace* ws, const SegmentDef& def) const {
    const auto problems =
        SegmentReferenceProblems(def, [ws](const std::string& id) -> const SegmentDef* {
          if (!ws) return nullptr;
          auto it = ws->by_id.find(id);
          return it == ws->by_id.end() ? nullptr : &it->second->def;
        });
    if (problems.empty()) return Status::Ok();
    if (def.condition_at.empty()) return Status::Invalid(problems.front(), "condition");
    return Status::Invalid("condition: " + problems.front(), def.condition_at);
  }

  // Adopts a condition's behavioural terms; returns the slots that are new.
  std::vector<int> Adopt(const rules::Condition& c) {
    std::vector<int> fresh;
    for (const auto& spec : c.aggregates())
      if (cache.registry().Adopt(spec)) fresh.push_back(spec->slot);
    if (!fresh.empty()) ForgetPlans();
    return fresh;
  }

  // ---- background jobs ----

  void Enqueue(std::function<Status(bool& done)> job) {
    std::lock_guard lock(job_mutex);
    jobs.push_back(std::move(job));
    job_cv.notify_all();
  }

  // Runs one job to completion, chunk by chunk.
  void RunJob(std::function<Status(bool& done)>& job) {
    for (int chunk = 0; chunk < 1'000'000; ++chunk) {
      bool done = false;
      Status s = job(done);
      if (!s.ok()) {
        spdlog::error("background segment computation failed: {}", s.ToString());
        return;
      }
      if (done) return;
    }
  }

  void JobLoop() {
    for (;;) {
      std::function<Status(bool&)> job;
      {
        std::unique_lock lock(job_mutex);
        job_cv.wait(lock, [&] { return stopping_jobs || !jobs.empty(); });
        if (stopping_jobs) return;
        job = std::move(jobs.front());
        jobs.pop_front();
        ++jobs_running;
      }
      RunJob(job);
      std::lock_guard lock(job_mutex);
      --jobs_running;
      job_cv.notify_all();
    }
  }
  bool stopping_jobs = false;  // GUARDED_BY(job_mutex)

  // A job that feeds the history (events with id <= upto) into new aggregate slots.
  std::function<Status(bool&)> BackfillJob(std::vector<int> slots, int64_t upto) {
    auto cursor = std::make_shared<int64_t>(0);
    return [this, slots = std::move(slots), upto, cursor](bool& done) -> Status {
      return store.WriteSync([&](store::WriteTxn& txn) -> Status {
        std::unique_lock lock(cache.mutex);
        NUDGE_TRY(Begin(txn));
        size_t n = 0;
        int64_t last = *cursor;
        Status scan = txn.ScanEvents(*cursor, upto, [&](const store::Event& e) -> Status {
          last = e.id;
          const ContactId id = cache.Resolve(e.contact);
          if (ContactState* st = cache.Get(id)) Feed(e, id, *st, FindRtMutable(id), &slots, false);
          return ++n >= options.events_per_chunk ? Status(Code::kFailedPrecondition, "chunk")
                                                 : Status::Ok();
        });
        if (!scan.ok() && scan.code() != Code::kFailedPrecondition) return scan;
        *cursor = last;
        done = n < options.events_per_chunk;
        return Status::Ok();
      });
    };
  }

  // A job that evaluates every contact of a workspace, silently (definitions changed);
  // `segment` limits it to one segment, which is marked ready at the end.
  std::function<Status(bool&)> RecomputeJob(WorkspaceId wsid, std::string segment,
                                            int64_t version) {
    auto cursor = std::make_shared<ContactId>(0);
    return [this, wsid, segment, version, cursor](bool& done) -> Status {
      return store.WriteSync([&](store::WriteTxn& txn) -> Status {
        std::unique_lock lock(cache.mutex);
        NUDGE_TRY(Begin(txn));
        Workspace& ws = Ws(wsid);
        Segment* only = nullptr;
        if (!segment.empty()) {
          auto it = ws.by_id.find(segment);
          if (it == ws.by_id.end() || it->second->version != version) {
            done = true;  // deleted or changed again meanwhile: a newer job does it
            return Status::Ok();
          }
          only = it->second;
        }
        size_t n = 0;
        ContactId id = *cursor;
        for (; id < static_cast<ContactId>(cache_capacity()) && n < options.contacts_per_chunk;
             ++id) {
          const ContactState* st = cache.Get(id);
          if (!st || st->workspace != wsid) continue;
          NUDGE_TRY(Evaluate(txn, id, /*silent=*/true, only));
          ++n;
        }
        *cursor = id;
        done = id >= static_cast<ContactId>(cache_capacity());
        if (done && only) {
          // "ready" only once the last members are committed and readable.
          txn.OnCommit([this, wsid, segment, version] {
            std::unique_lock l(cache.mutex);
            auto& ws = Ws(wsid);
            auto it = ws.by_id.find(segment);
            if (it != ws.by_id.end() && it->second->version == version)
              it->second->computing = false;
          });
        }
        return Status::Ok();
      });
    };
  }
  size_t cache_capacity() const { return cache.id_bound(); }

  // ---- timers ----

  void TimerLoop() {
    std::unique_lock lock(timer_mutex);
    while (!stopping) {
      if (timers.empty()) {
        timer_cv.wait_for(lock, std::chrono::seconds(5));
        continue;
      }
      const Millis due = timers.top().first;
      const Millis now = clock.NowMillis();
      if (due > now) {
        timer_cv.wait_for(lock, std::chrono::milliseconds(std::min<Millis>(due - now, 5000)));
        continue;
      }
      lock.unlock();
      Status s = self.RunDue();
      if (!s.ok()) spdlog::error("segment timers: {}", s.ToString());
      lock.lock();
    }
  }
};

// -------------------------------------------------------------------------------------------

Engine::Engine(store::Store& store, profile::ContactCache& cache, const core::Clock& clock,
               core::MetricsRegistry* metrics, EngineOptions options)
    : impl_(std::make_unique<Impl>(*this, store, cache, clock, metrics, options)) {}

Engine::~Engine() { Stop(); }

void Engine::Stop() {
  {
    std::lock_guard lock(impl_->timer_mutex);
    impl_->stopping = true;
    impl_->timer_cv.notify_all();
  }
  {
    std::lock_guard lock(impl_->job_mutex);
    impl_->stopping_jobs = true;
    impl_->job_cv.notify_all();
  }
  if (impl_->timer_thread.joinable()) impl_->timer_thread.join();
  if (impl_->job_thread.joinable()) impl_->job_thread.join();
}

// Loads definitions, contacts, memberships and stages from the store and replays the events.
// Runs with cache.mutex held exclusively.
Status Engine::Impl::LoadState(store::ReadTxn* within) {
  Impl& m = *this;
  const auto read = [&](const std::function<Status(store::ReadTxn&)>& fn) {
    return within ? fn(*within) : m.store.Read(fn);
  };
  m.workspaces.clear();
  m.runtime.Clear();
  m.cache.Clear();
  m.labels.clear();
  {
    std::lock_guard timer_lock(m.timer_mutex);
    m.timers = {};
  }
  std::vector<store::Definition> segments, scorings, stages;
  NUDGE_TRY(read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(segments, t.AllDefinitions("segment"));
    NUDGE_ASSIGN_OR_RETURN(scorings, t.AllDefinitions("scoring"));
    NUDGE_ASSIGN_OR_RETURN(stages, t.AllDefinitions("stages"));
    return Status::Ok();
  }));
  for (const auto& d : scorings) {
    auto def = ParseScoring(d.body, "stored scoring of workspace " + std::to_string(d.workspace));
    if (!def) return def.error();
    m.Ws(d.workspace).scoring = std::move(*def);
  }
  for (const auto& d : stages) {
    auto def = ParseStages(d.body, "stored stages of workspace " + std::to_string(d.workspace));
    if (!def) return def.error();
    m.Ws(d.workspace).stages = std::move(*def);
  }
  for (const auto& d : segments) {
    auto def = ParseSegment(d.body, "stored segment " + d.id);
    if (!def) return def.error();
    auto seg = std::make_unique<Segment>();
    seg->def = std::move(*def);
    seg->version = d.version;
    seg->updated_at = d.updated_at;
    Workspace& ws = m.Ws(d.workspace);
    m.AssignBit(ws, *seg);
    ws.by_id[seg->def.id] = seg.get();
    ws.segments.push_back(std::move(seg));
  }
  for (auto& [id, ws] : m.workspaces) {
    NUDGE_TRY(m.Order(*ws));
    for (auto& s : ws->segments) m.Adopt(*s->def.condition);
    for (auto& s : ws->stages.stages) m.Adopt(*s.when);
    for (auto& r : ws->scoring.rules)
      if (r.condition) m.Adopt(*r.condition);
  }
  // Default stages exist for every workspace, even one never configured.
  for (const auto& s : DefaultStages().stages) m.Adopt(*s.when);

  const int64_t start = core::MonotonicMicros();
  size_t contacts = 0, events = 0;
  NUDGE_TRY(read([&](store::ReadTxn& t) -> Status {
    NUDGE_TRY(t.ScanContacts([&](const store::Contact& c) -> Status {
      profile::ContactState& st = m.cache.Ensure(c.id, c.workspace);
      st.traits = c.traits;
      st.first_seen = c.created_at;
      st.last_seen = c.last_seen_at;
      m.Ws(c.workspace).columns.Set(c.id, st.traits);
      m.SetLabels(c);
      ++contacts;
      return Status::Ok();
    }));
    NUDGE_TRY(t.ScanSegmentMembers([&](const store::SegmentMember& sm) -> Status {
      auto it = m.workspaces.find(sm.workspace);
      if (it == m.workspaces.end()) return Status::Ok();
      auto s = it->second->by_id.find(sm.segment);
      if (s != it->second->by_id.end()) m.MarkMember(*s->second, sm.contact, true);
      return Status::Ok();
    }));
    NUDGE_TRY(t.ScanSubscriptions([&](const store::Subscription& sub) -> Status {
      if (profile::ContactState* st = m.cache.Get(sub.contact)) SetSubscriptionState(*st, sub);
      return Status::Ok();
    }));
    NUDGE_TRY(t.ScanContactStages([&](const store::StageEntry& e) -> Status {
      const profile::ContactState* st = m.cache.Get(e.contact);
      if (!st) return Status::Ok();
      const Workspace& ws = m.Ws(st->workspace);
      for (size_t i = 0; i < ws.stages.stages.size(); ++i)
        if (ws.stages.stages[i].name == e.stage) {
          m.Rt(e.contact).stage = static_cast<int>(i);
          m.Rt(e.contact).stage_since = e.at;
        }
      return Status::Ok();
    }));
    return t.ScanEvents(0, 0, [&](const store::Event& e) -> Status {
      ++events;
      const ContactId id = m.cache.Resolve(e.contact);
      profile::ContactState* st = m.cache.Get(id);
      if (!st) return Status::Ok();
      m.Feed(e, id, *st, &m.Rt(id), nullptr, true);
      return Status::Ok();
    });
  }));
  // A contact already past MQL or SQL was told so when it crossed; start from there.
  m.cache.ForEach(0, [&](ContactId id, const profile::ContactState& st) {
    Workspace& ws = m.Ws(st.workspace);
    Runtime& rt = m.Rt(id);
    Impl::ContactEnv env(m, ws, id, st, &rt, m.clock.NowMillis());
    rt.qualification = Impl::Qualification(ws.scoring, env.Score());
  });
  spdlog::info("loaded {} contacts and replayed {} events into {} behavioural terms in {} ms",
               contacts, events, m.cache.registry().by_slot().size(),
               (core::MonotonicMicros() - start) / 1000);
  return Status::Ok();
}

Status Engine::Load() {
  Impl& m = *impl_;
  std::unique_lock lock(m.cache.mutex);
  NUDGE_TRY(m.LoadState());
  lock.unlock();

  // Reconcile: what changed while nudge was down (windows slid, definitions changed) is
  // applied now and emitted like any change.
  std::vector<ContactId> ids;
  {
    std::shared_lock shared(m.cache.mutex);
    m.cache.ForEach(0, [&](ContactId id, const profile::ContactState&) { ids.push_back(id); });
  }
  for (size_t i = 0; i < ids.size(); i += m.options.contacts_per_chunk) {
    NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
      std::unique_lock l(m.cache.mutex);
      NUDGE_TRY(m.Begin(txn));
      for (size_t k = i; k < std::min(ids.size(), i + m.options.contacts_per_chunk); ++k) {
        NUDGE_TRY(m.Evaluate(txn, ids[k], /*silent=*/false));
        NUDGE_TRY(m.FlushPending(txn, 0, m.Cause("start")));
      }
      return Status::Ok();
    }));
  }
  if (m.options.background_threads) {
    m.timer_thread = std::thread([&m] { m.TimerLoop(); });
    m.job_thread = std::thread([&m] { m.JobLoop(); });
  }
  return Status::Ok();
}

Result<SegmentInfo> Engine::PutSegment(WorkspaceId wsid, SegmentDef def) {
  Impl& m = *impl_;
  {
    std::shared_lock lock(m.cache.mutex);
    NUDGE_TRY(m.CheckReferences(m.FindWs(wsid), def));
  }
  SegmentInfo info;
  std::vector<int> fresh;
  int64_t upto = 0;
  bool changed = false;
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.Begin(txn));
    NUDGE_TRY(m.CheckReferences(m.FindWs(wsid), def));  // again: another PUT may have raced
    const Millis now = m.clock.NowMillis();
    NUDGE_ASSIGN_OR_RETURN(int64_t version,
                           txn.PutDefinition(wsid, "segment", def.id, ToJson(def), now));
    Workspace& ws = m.Ws(wsid);
    auto it = ws.by_id.find(def.id);
    if (it != ws.by_id.end() && it->second->version == version) {
      info = {it->second->def, version, it->second->computing ? "computing" : "ready",
              it->second->count, it->second->updated_at};
      return Status::Ok();
    }
    changed = true;
    if (it != ws.by_id.end()) NUDGE_TRY(txn.ClearSegment(wsid, def.id));
    auto seg = std::make_unique<Segment>();
    seg->def = def;
    seg->version = version;
    seg->updated_at = now;
    seg->computing = true;
    fresh = m.Adopt(*seg->def.condition);
    Segment* raw = seg.get();
    if (it != ws.by_id.end()) m.ReleaseBit(ws, *it->second);
    m.AssignBit(ws, *raw);
    if (it != ws.by_id.end()) {
      for (auto& s : ws.segments)
        if (s.get() == it->second) s = std::move(seg);
    } else {
      ws.segments.push_back(std::move(seg));
    }
    ws.by_id[def.id] = raw;
    NUDGE_TRY(m.Order(ws));
    NUDGE_ASSIGN_OR_RETURN(upto, txn.MaxEventId());
    info = {raw->def, version, "computing", 0, now};
    return Status::Ok();
  }));
  if (changed) {
    if (!fresh.empty()) m.Enqueue(m.BackfillJob(fresh, upto));
    m.Enqueue(m.RecomputeJob(wsid, def.id, info.version));
    if (!m.options.background_threads) WaitIdle();
  }
  return info;
}

uint64_t Engine::Reloads() const { return impl_->reloads.load(); }

Status Engine::DeleteSegment(WorkspaceId wsid, const std::string& id) {
  Impl& m = *impl_;
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.BeginUnless(txn, [&]() -> Status {
      Workspace& ws = m.Ws(wsid);
      if (!ws.by_id.count(id)) return Status::NotFound("no segment '" + id + "'");
      const auto names = [&](const rules::Condition* c) {
        if (!c) return false;
        const auto& deps = c->segments();
        return std::find(deps.begin(), deps.end(), id) != deps.end();
      };
      for (const auto& s : ws.segments)
        if (s->def.id != id && names(s->def.condition.get()))
          return Status(Code::kFailedPrecondition,
                        "segment '" + s->def.id + "' refers to '" + id + "'; change it first");
      for (const auto& s : ws.stages.stages)
        if (names(s.when.get()))
          return Status(Code::kFailedPrecondition, "the stage '" + s.name + "' refers to '" + id +
                                                       "'; change the stages first");
      for (const auto& r : ws.scoring.rules)
        if (names(r.condition.get()) || names(r.where.get()))
          return Status(Code::kFailedPrecondition, "the scoring rule '" + r.id + "' refers to '" +
                                                       id + "'; change the scoring first");
      return Status::Ok();
    }));
    Workspace& ws = m.Ws(wsid);
    auto it = ws.by_id.find(id);
    NUDGE_TRY(txn.DeleteDefinition(wsid, "segment", id));
    NUDGE_TRY(txn.ClearSegment(wsid, id));
    m.ReleaseBit(ws, *it->second);
    std::erase_if(ws.segments, [&](const auto& s) { return s->def.id == id; });
    ws.by_id.erase(id);
    // What events reach is kept by segment position: the positions after it moved.
    return m.Order(ws);
  });
}

Result<SegmentInfo> Engine::GetSegment(WorkspaceId wsid, const std::string& id) const {
  std::shared_lock lock(impl_->cache.mutex);
  const Workspace* ws = impl_->FindWs(wsid);
  if (!ws || !ws->by_id.count(id)) return Err(Status::NotFound("no segment '" + id + "'"));
  const Segment& s = *ws->by_id.at(id);
  return SegmentInfo{s.def, s.version, s.computing ? "computing" : "ready", s.count, s.updated_at};
}

std::vector<SegmentInfo> Engine::ListSegments(WorkspaceId wsid) const {
  std::shared_lock lock(impl_->cache.mutex);
  std::vector<SegmentInfo> out;
  if (const Workspace* ws = impl_->FindWs(wsid))
    for (const auto& s : ws->segments)
      out.push_back(
          {s->def, s->version, s->computing ? "computing" : "ready", s->count, s->updated_at});
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.def.id < b.def.id; });
  return out;
}

bool Engine::HasSegment(WorkspaceId wsid, const std::string& id) const {
  std::shared_lock lock(impl_->cache.mutex);
  const Workspace* ws = impl_->FindWs(wsid);
  return ws && ws->by_id.count(id);
}

Status Engine::PutScoring(WorkspaceId wsid, ScoringDef def) {
  Impl& m = *impl_;
  bool changed = false;
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.BeginUnless(txn, [&]() -> Status {
      for (const auto& r : def.rules) {
        if (r.condition)
          NUDGE_TRY(
              m.CheckNamedSegments(wsid, *r.condition, "rules." + r.id + ".condition", "scoring"));
        if (r.where)
          NUDGE_TRY(m.CheckNamedSegments(wsid, *r.where, "rules." + r.id + ".where", "scoring"));
      }
      return Status::Ok();
    }));
    NUDGE_ASSIGN_OR_RETURN(auto old, txn.GetDefinition(wsid, "scoring", "scoring"));
    const std::string body = ToJson(def);
    if (old && old->body == body) return Status::Ok();
    changed = true;
    NUDGE_ASSIGN_OR_RETURN(
        int64_t version, txn.PutDefinition(wsid, "scoring", "scoring", body, m.clock.NowMillis()));
    (void)version;
    for (auto& r : def.rules)
      if (r.condition) m.Adopt(*r.condition);
    Workspace& ws = m.Ws(wsid);
    ws.scoring = std::move(def);
    ws.CollectThresholds();
    m.SyncColumns(ws);
    // Points are recounted from the history under the new rules.
    m.cache.ForEach(wsid, [&](ContactId id, const profile::ContactState&) {
      if (Runtime* rt = m.FindRtMutable(id)) {
        rt->rules.clear();
        rt->qualification = 0;
      }
    });
    return Status::Ok();
  }));
  if (changed) {
    auto cursor = std::make_shared<int64_t>(0);
    m.Enqueue([&m, wsid, cursor](bool& done) -> Status {
      return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
        std::unique_lock lock(m.cache.mutex);
        NUDGE_TRY(m.Begin(txn));
        size_t n = 0;
        int64_t last = *cursor;
        Status s = txn.ScanEvents(*cursor, 0, [&](const store::Event& e) -> Status {
          last = e.id;
          if (e.workspace == wsid) {
            const ContactId id = m.cache.Resolve(e.contact);
            if (profile::ContactState* st = m.cache.Get(id)) {
              // Scores only: the aggregates already hold these events.
              static const std::vector<int> kNoSlots;
              m.Feed(e, id, *st, &m.Rt(id), &kNoSlots, true);
            }
          }
          return ++n >= m.options.events_per_chunk ? Status(Code::kFailedPrecondition, "chunk")
                                                   : Status::Ok();
        });
        if (!s.ok() && s.code() != Code::kFailedPrecondition) return s;
        *cursor = last;
        done = n < m.options.events_per_chunk;
        return Status::Ok();
      });
    });
    m.Enqueue(m.RecomputeJob(wsid, "", 0));
    if (!m.options.background_threads) WaitIdle();
  }
  return Status::Ok();
}

Status Engine::PutStages(WorkspaceId wsid, StagesDef def) {
  Impl& m = *impl_;
  bool changed = false;
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.BeginUnless(txn, [&]() -> Status {
      for (const auto& s : def.stages)
        NUDGE_TRY(m.CheckNamedSegments(wsid, *s.when, "when",
                                       s.when_at.empty() ? "stages." + s.name : s.when_at));
      return Status::Ok();
    }));
    const std::string body = ToJson(def);
    NUDGE_ASSIGN_OR_RETURN(auto old, txn.GetDefinition(wsid, "stages", "stages"));
    if (old && old->body == body) return Status::Ok();
    changed = true;
    NUDGE_ASSIGN_OR_RETURN(int64_t version,
                           txn.PutDefinition(wsid, "stages", "stages", body, m.clock.NowMillis()));
    (void)version;
    std::vector<int> fresh;
    for (auto& s : def.stages) {
      auto f = m.Adopt(*s.when);
      fresh.insert(fresh.end(), f.begin(), f.end());
    }
    Workspace& ws = m.Ws(wsid);
    // Keep each contact's stage by name where the new list still has it.
    std::vector<int> remap(ws.stages.stages.size(), -1);
    for (size_t i = 0; i < ws.stages.stages.size(); ++i)
      for (size_t j = 0; j < def.stages.size(); ++j)
        if (ws.stages.stages[i].name == def.stages[j].name) remap[i] = static_cast<int>(j);
    m.cache.ForEach(wsid, [&](ContactId id, const profile::ContactState&) {
      if (Runtime* rt = m.FindRtMutable(id); rt && rt->stage >= 0)
        rt->stage = static_cast<size_t>(rt->stage) < remap.size()
                        ? remap[static_cast<size_t>(rt->stage)]
                        : -1;
    });
    ws.stages = std::move(def);
    ws.CollectThresholds();
    m.SyncColumns(ws);
    if (!fresh.empty()) {
      NUDGE_ASSIGN_OR_RETURN(int64_t upto, txn.MaxEventId());
      m.Enqueue(m.BackfillJob(fresh, upto));
    }
    return Status::Ok();
  }));
  if (changed) {
    m.Enqueue(m.RecomputeJob(wsid, "", 0));
    if (!m.options.background_threads) WaitIdle();
  }
  return Status::Ok();
}

ScoringDef Engine::GetScoring(WorkspaceId wsid) const {
  std::shared_lock lock(impl_->cache.mutex);
  const Workspace* ws = impl_->FindWs(wsid);
  return ws ? ws->scoring : ScoringDef{};
}

StagesDef Engine::GetStages(WorkspaceId wsid) const {
  std::shared_lock lock(impl_->cache.mutex);
  const Workspace* ws = impl_->FindWs(wsid);
  return ws ? ws->stages : DefaultStages();
}

std::vector<std::pair<std::string, uint64_t>> Engine::StageCounts(WorkspaceId wsid) const {
  std::shared_lock lock(impl_->cache.mutex);
  const Workspace* ws = impl_->FindWs(wsid);
  const StagesDef stages = ws ? ws->stages : DefaultStages();
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& s : stages.stages) out.emplace_back(s.name, 0);
  impl_->cache.ForEach(wsid, [&](ContactId id, const profile::ContactState&) {
    const Runtime* rt = impl_->FindRt(id);
    if (rt && rt->stage >= 0 && static_cast<size_t>(rt->stage) < out.size())
      ++out[static_cast<size_t>(rt->stage)].second;
  });
  return out;
}

namespace {

// What a condition that reads only traits sees when its trait paths are columns: the values
// of one combination of codes.
class ColumnEnv final : public rules::TraitsEnv {
 public:
  ColumnEnv(const TraitColumns& columns, const std::vector<std::vector<std::string>>& paths,
            const std::vector<int>& cols, Millis now)
      : TraitsEnv(now), columns_(columns), paths_(paths), cols_(cols), codes_(cols.size(), 0) {}
  std::vector<uint16_t>& codes() { return codes_; }

  Value Trait(std::span<const std::string> path) const override {
    for (size_t j = 0; j < paths_.size(); ++j)
      if (paths_[j].size() == path.size() &&
          std::equal(path.begin(), path.end(), paths_[j].begin()))
        return columns_.Decode(cols_[j], codes_[j]);
    return Value::Null();
  }

 private:
  const TraitColumns& columns_;
  const std::vector<std::vector<std::string>>& paths_;
  const std::vector<int>& cols_;
  std::vector<uint16_t> codes_;
};

// A condition that reads traits and nothing else, on paths kept as columns, is evaluated once
// per combination of values that occurs, and every contact is one table lookup. False when
// the condition does not qualify (the caller evaluates it contact by contact).
bool PreviewFromColumns(const Workspace& ws, const rules::Condition& condition, Millis now,
                        size_t sample, Preview& out) {
  using C = rules::Condition;
  const auto& paths = condition.trait_paths();
  if (paths.empty() || !condition.aggregates().empty() || !condition.segments().empty() ||
      condition.reads_event() || (condition.reads() & ~C::kReadsTraits))
    return false;
  std::vector<int> cols;
  std::vector<const uint16_t*> data;
  std::vector<size_t> sizes, radix;
  size_t combinations = 1;
  for (const auto& p : paths) {
    const int col = ws.columns.Find(p);
    if (col < 0) return false;
    cols.push_back(col);
    data.push_back(ws.columns.codes(col).data());
    sizes.push_back(ws.columns.codes(col).size());
    radix.push_back(ws.columns.Radix(col));
    combinations *= radix.back();
    if (combinations > (size_t{1} << 22)) return false;
  }
  out.from_columns = true;
  ColumnEnv env(ws.columns, paths, cols, now);
  std::vector<int8_t> memo(combinations, -1);
  const size_t k = cols.size();
  const size_t n = sizes[0];  // a contact of the workspace has a code in every column
  for (size_t id = 0; id < n; ++id) {
    const uint16_t first = data[0][id];
    if (first == TraitColumns::kAbsent) continue;
    size_t index = first;
    for (size_t j = 1; j < k; ++j) index = index * radix[j] + (id < sizes[j] ? data[j][id] : 0);
    int8_t& hit = memo[index];
    if (hit < 0) {
      auto& codes = env.codes();
      codes[0] = first;
      for (size_t j = 1; j < k; ++j) codes[j] = id < sizes[j] ? data[j][id] : 0;
      hit = condition.Matches(env) ? 1 : 0;
    }
    if (!hit) continue;
    ++out.count;
    if (out.sample.size() < sample) out.sample.push_back(static_cast<ContactId>(id));
  }
  return true;
}

}  // namespace

Engine::ColumnStats Engine::TraitColumnStats() const {
  std::shared_lock lock(impl_->cache.mutex);
  ColumnStats out;
  for (const auto& [id, ws] : impl_->workspaces) {
    out.kept += ws->columns.kept();
    out.bytes += ws->columns.MemoryBytes();
  }
  return out;
}

Result<Preview> Engine::PreviewCondition(WorkspaceId wsid, const std::string& text, size_t sample) {
  Impl& m = *impl_;
  NUDGE_ASSIGN_OR_RETURN(auto condition, rules::Condition::Compile(text));
  {
    std::shared_lock lock(m.cache.mutex);
    for (const auto& dep : condition->segments())
      if (!m.FindWs(wsid) || !m.FindWs(wsid)->by_id.count(dep))
        return Err(Status::Invalid("refers to the unknown segment \"" + dep + "\"", "condition"));
  }
  // Terms nudge already keeps are read as they are; new ones are counted from the history.
  std::vector<std::shared_ptr<AggregateSpec>> fresh;
  {
    std::shared_lock lock(m.cache.mutex);
    int next = kPreviewSlotBase;
    for (const auto& spec : condition->aggregates()) {
      bool known = false;
      for (const auto& s : m.cache.registry().by_slot())
        if (s->key == spec->key) {
          spec->slot = s->slot;
          known = true;
        }
      if (!known) {
        spec->slot = next++;
        fresh.push_back(spec);
      }
    }
  }
  std::unordered_map<ContactId, profile::ContactAggregates> side;
  if (!fresh.empty()) {
    NUDGE_TRY(m.store.Read([&](store::ReadTxn& t) -> Status {
      std::shared_lock lock(m.cache.mutex);
      return t.ScanEvents(0, 0, [&](const store::Event& e) -> Status {
        if (e.workspace != wsid) return Status::Ok();
        const ContactId id = m.cache.Resolve(e.contact);
        profile::ContactState* st = m.cache.Get(id);
        if (st) m.Feed(e, id, *st, m.FindRtMutable(id), nullptr, false, &side, &fresh);
        return Status::Ok();
      });
    }));
  }
  Preview out;
  std::shared_lock lock(m.cache.mutex);
  const Workspace* ws = m.FindWs(wsid);
  if (!ws) return out;
  const Millis now = m.clock.NowMillis();
  if (fresh.empty() && PreviewFromColumns(*ws, *condition, now, sample, out)) return out;
  m.cache.ForEach(wsid, [&](ContactId id, const profile::ContactState& st) {
    Impl::ContactEnv env(m, *ws, id, st, m.FindRt(id), now);
    env.preview = &side;
    if (!condition->Matches(env)) return;
    ++out.count;
    if (out.sample.size() < sample) out.sample.push_back(id);
  });
  return out;
}

ContactView Engine::View(ContactId id) const {
  std::shared_lock lock(impl_->cache.mutex);
  ContactView v;
  const profile::ContactState* st = impl_->cache.Get(id);
  if (!st) return v;
  const Workspace* ws = impl_->FindWs(st->workspace);
  if (!ws) return v;
  const Runtime* rt = impl_->FindRt(id);
  for (const auto& s : ws->segments)
    if (impl_->IsMember(*s, id, rt)) v.segments.push_back(s->def.id);
  std::sort(v.segments.begin(), v.segments.end());
  const Millis now = impl_->clock.NowMillis();
  Impl::ContactEnv env(*impl_, *ws, id, *st, rt, now);
  v.score = impl_->ScoreBreakdown(*ws, rt, env, now);
  const uint8_t q = Impl::Qualification(ws->scoring, v.score.score);
  v.score.qualification = q == 2 ? "SQL" : q == 1 ? "MQL" : "";
  if (rt && rt->stage >= 0 && static_cast<size_t>(rt->stage) < ws->stages.stages.size()) {
    v.stage = ws->stages.stages[static_cast<size_t>(rt->stage)].name;
    v.stage_since = rt->stage_since;
  }
  return v;
}

std::optional<Millis> Engine::NextDue() const {
  std::lock_guard lock(impl_->timer_mutex);
  if (impl_->timers.empty()) return std::nullopt;
  return impl_->timers.top().first;
}

Status Engine::RunDue() {
  Impl& m = *impl_;
  const Millis now = m.clock.NowMillis();
  std::vector<std::pair<Millis, ContactId>> due;
  {
    std::lock_guard lock(m.timer_mutex);
    while (!m.timers.empty() && m.timers.top().first <= now && due.size() < 10000) {
      due.push_back(m.timers.top());
      m.timers.pop();
    }
  }
  if (due.empty()) return Status::Ok();
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.Begin(txn));
    for (const auto& [at, id] : due) {
      Runtime* rt = m.FindRtMutable(id);
      if (!rt || rt->wake != at) continue;  // rescheduled since
      rt->wake = 0;
      if (profile::ContactState* st = m.cache.Get(id)) {
        for (auto& [slot, state] : st->aggregates.all())
          const_cast<profile::AggregateState&>(state).Prune(*m.cache.registry().spec(slot), now);
      }
      NUDGE_TRY(m.Evaluate(txn, id, /*silent=*/false));
      NUDGE_TRY(m.FlushPending(txn, 0, "t" + std::to_string(at)));
    }
    return Status::Ok();
  });
}

void Engine::WaitIdle() {
  Impl& m = *impl_;
  if (!m.options.background_threads) {
    for (;;) {
      std::function<Status(bool&)> job;
      {
        std::lock_guard lock(m.job_mutex);
        if (m.jobs.empty()) return;
        job = std::move(m.jobs.front());
        m.jobs.pop_front();
      }
      m.RunJob(job);
    }
  }
  std::unique_lock lock(m.job_mutex);
  m.job_cv.wait(lock, [&] { return m.jobs.empty() && m.jobs_running == 0; });
}

Status Engine::OnContactCreated(store::WriteTxn& txn, const store::Contact& c) {
  Impl& m = *impl_;
  std::unique_lock lock(m.cache.mutex);
  NUDGE_TRY(m.Begin(txn));
  profile::ContactState& st = m.cache.Ensure(c.id, c.workspace);
  st.traits = c.traits;
  st.first_seen = c.created_at;
  st.last_seen = c.last_seen_at;
  m.Ws(c.workspace).columns.Set(c.id, st.traits);
  m.SetLabels(c);
  if (downstream_) NUDGE_TRY(downstream_->OnContactCreated(txn, c));
  NUDGE_TRY(m.Evaluate(txn, c.id, false));
  return m.FlushPending(txn, 0, m.Cause("created"));
}

Status Engine::OnContactChanged(store::WriteTxn& txn, const store::Contact& c, std::string_view) {
  Impl& m = *impl_;
  std::unique_lock lock(m.cache.mutex);
  NUDGE_TRY(m.Begin(txn));
  profile::ContactState& st = m.cache.Ensure(c.id, c.workspace);
  const bool relabelled = m.SetLabels(c);
  if (st.traits == c.traits) {
    m.Ws(st.workspace).columns.Touch(c.id, st.traits);
    if (relabelled) {  // tags or source: what `tags` and `source` read
      NUDGE_TRY(m.Evaluate(txn, c.id, false));
      NUDGE_TRY(m.FlushPending(txn, 0, m.Cause("tags")));
    }
    return downstream_ ? downstream_->OnContactChanged(txn, c, st.traits) : Status::Ok();
  }
  const std::string previous = std::exchange(st.traits, c.traits);
  m.Ws(st.workspace).columns.Set(c.id, st.traits);
  NUDGE_TRY(m.Evaluate(txn, c.id, false));
  NUDGE_TRY(m.FlushPending(txn, 0, m.Cause("traits")));
  return downstream_ ? downstream_->OnContactChanged(txn, c, previous) : Status::Ok();
}

Status Engine::OnEvent(store::WriteTxn& txn, const store::Event& e) {
  Impl& m = *impl_;
  std::unique_lock lock(m.cache.mutex);
  NUDGE_TRY(m.Begin(txn));
  return m.ProcessEvent(txn, e, 0);
}

void Engine::Prefetch(ContactId id) {
  const Impl& m = *impl_;
  m.cache.Prefetch(id);
  if (id >= 0)
    if (const Runtime* rt = m.runtime.Find(static_cast<size_t>(id))) __builtin_prefetch(rt);
  if (downstream_) downstream_->Prefetch(id);
}

Status Engine::OnContactsMerged(store::WriteTxn& txn, ContactId from, ContactId into) {
  Impl& m = *impl_;
  {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.Begin(txn));
    if (const profile::ContactState* st = m.cache.Get(from)) m.Forget(st->workspace, from);
    Runtime* src = m.FindRtMutable(from);
    if (src) {
      Runtime& dst = m.Rt(into);
      for (RuleState& r : src->rules) dst.rules.push_back(std::move(r));
      dst.stage = std::max(dst.stage, src->stage);
      m.ForgetRt(from);
    }
    m.cache.Merge(from, into);
    if (downstream_) NUDGE_TRY(downstream_->OnContactsMerged(txn, from, into));
    NUDGE_TRY(m.Evaluate(txn, into, false));
    NUDGE_TRY(m.FlushPending(txn, 0, m.Cause("merge")));
  }
  return Status::Ok();
}

Status Engine::OnContactDeleted(store::WriteTxn& txn, ContactId id) {
  Impl& m = *impl_;
  {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.Begin(txn));
    if (const profile::ContactState* st = m.cache.Get(id)) m.Forget(st->workspace, id);
    m.ForgetRt(id);
    m.cache.Remove(id);
    if (downstream_) NUDGE_TRY(downstream_->OnContactDeleted(txn, id));
  }
  return Status::Ok();
}

void Engine::Adopt(const rules::Condition& condition) {
  Impl& m = *impl_;
  std::vector<int> fresh;
  {
    std::unique_lock lock(m.cache.mutex);
    fresh = m.Adopt(condition);
  }
  if (fresh.empty()) return;
  int64_t upto = 0;
  (void)m.store.Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(upto, t.MaxEventId());
    return Status::Ok();
  });
  m.Enqueue(m.BackfillJob(fresh, upto));
  if (!m.options.background_threads) WaitIdle();
}

bool Engine::MatchesLocked(const rules::Condition& condition, ContactId id,
                           const std::string* event_body, bool event_terms_mean_this_event) const {
  Impl& m = *impl_;
  const profile::ContactState* st = m.cache.Get(id);
  if (!st) return false;
  const Workspace* ws = m.FindWs(st->workspace);
  if (!ws) return false;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element body;
  const simdjson::dom::element* saved = m.current_event;
  if (event_body) {
    if (parser.parse(*event_body).get(body) != simdjson::SUCCESS) return false;
    m.current_event = &body;
  } else {
    m.current_event = nullptr;
  }
  Impl::ContactEnv env(m, *ws, id, *st, m.FindRt(id), m.clock.NowMillis());
  env.event_terms_mean_this_event = event_terms_mean_this_event;
  const bool result = condition.Matches(env);
  m.current_event = saved;
  return result;
}

std::optional<Millis> Engine::NextChangeLocked(const rules::Condition& condition,
                                               ContactId id) const {
  Impl& m = *impl_;
  const profile::ContactState* st = m.cache.Get(id);
  if (!st) return std::nullopt;
  const Workspace* ws = m.FindWs(st->workspace);
  if (!ws) return std::nullopt;
  Impl::ContactEnv env(m, *ws, id, *st, m.FindRt(id), m.clock.NowMillis());
  return condition.NextChange(env);
}

bool Engine::InSegmentLocked(WorkspaceId wsid, const std::string& segment, ContactId id) const {
  const Workspace* ws = impl_->FindWs(wsid);
  if (!ws) return false;
  auto it = ws->by_id.find(segment);
  return it != ws->by_id.end() && impl_->IsMember(*it->second, id, impl_->FindRt(id));
}

ContactId Engine::ResolveLocked(ContactId id) const { return impl_->cache.Resolve(id); }

const std::string* Engine::TraitsLocked(ContactId id) const {
  const profile::ContactState* st = impl_->cache.Get(id);
  return st ? &st->traits : nullptr;
}

Status Engine::EmitLocked(store::WriteTxn& txn, ContactId id, const std::string& name,
                          const std::string& properties_json, const std::string& key, bool stable) {
  Impl& m = *impl_;
  if (m.current_depth >= m.options.max_cascade) {
    spdlog::warn("derived event {} for contact {} dropped: {} levels deep", name, id,
                 m.current_depth);
    return Status::Ok();
  }
  // Only this event: the segment changes waiting to be stored keep their place.
  std::vector<Pending> saved = std::exchange(m.pending, {});
  m.pending.push_back({id, name, properties_json, key, stable});
  Status s = m.FlushPending(txn, m.current_depth, m.Cause("j"));
  m.pending = std::move(saved);
  return s;
}

Status Engine::ContactChangedLocked(store::WriteTxn& txn, const store::Contact& c) {
  Impl& m = *impl_;
  profile::ContactState& st = m.cache.Ensure(c.id, c.workspace);
  const std::string previous = std::exchange(st.traits, c.traits);
  m.Ws(st.workspace).columns.Set(c.id, st.traits);
  m.SetLabels(c);
  std::vector<Pending> saved = std::exchange(m.pending, {});
  Status s = m.Evaluate(txn, c.id, false);
  if (s.ok()) s = m.FlushPending(txn, m.current_depth, m.Cause("update"));
  m.pending = std::move(saved);
  if (s.ok() && downstream_) s = downstream_->OnContactChanged(txn, c, previous);
  return s;
}

Status Engine::ApplyConsent(const store::ConsentRecord& record, const std::string& event,
                            const std::string& properties_json) {
  Impl& m = *impl_;
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.BeginUnless(txn, [&] { return m.KnownContact(record.subscription.contact); }));
    store::ConsentRecord r = record;
    r.subscription.contact = m.cache.Resolve(r.subscription.contact);
    profile::ContactState* st = m.cache.Get(r.subscription.contact);
    // The same choice again (a link followed twice, a one-click POST retried) changes nothing:
    // no second consent log entry, no second event for journeys to start on.
    if (SameSubscriptionState(*st, r.subscription)) return Status::Ok();
    NUDGE_TRY(txn.SetSubscription(r));
    SetSubscriptionState(*st, r.subscription);
    NUDGE_TRY(m.Evaluate(txn, r.subscription.contact, false));
    NUDGE_TRY(m.FlushPending(txn, 0, m.Cause("consent")));
    if (event.empty()) return Status::Ok();
    return EmitLocked(txn, r.subscription.contact, event,
                      nlohmann::json::accept(properties_json) ? properties_json : "{}",
                      r.source + ":" + m.Cause("c"));
  });
}

Status Engine::Emit(store::ContactId id, const std::string& name,
                    const std::string& properties_json, const std::string& key) {
  Impl& m = *impl_;
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.BeginUnless(txn, [&] { return m.KnownContact(id); }));
    const ContactId resolved = m.cache.Resolve(id);
    return EmitLocked(txn, resolved, name,
                      nlohmann::json::accept(properties_json) ? properties_json : "{}", key);
  });
}

bool Engine::Subscribed(ContactId id, std::string_view channel, std::string_view topic) const {
  Impl& m = *impl_;
  std::shared_lock lock(m.cache.mutex);
  id = m.cache.Resolve(id);
  const profile::ContactState* st = m.cache.Get(id);
  if (!st) return false;
  static const Workspace kNoDefinitions;
  const Workspace* ws = m.FindWs(st->workspace);
  Impl::ContactEnv env(m, ws ? *ws : kNoDefinitions, id, *st, m.FindRt(id), m.clock.NowMillis());
  return env.Subscribed(channel, topic);
}

void Engine::SetDoubleOptIn(WorkspaceId ws, std::set<std::string> channels) {
  Impl& m = *impl_;
  std::unique_lock lock(m.cache.mutex);
  m.Ws(ws).double_opt_in = std::move(channels);
}

Status Engine::WriteLocked(const std::function<Status(store::WriteTxn&)>& fn) {
  Impl& m = *impl_;
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock lock(m.cache.mutex);
    NUDGE_TRY(m.Begin(txn));
    return fn(txn);
  });
}

void Engine::WriteLockedAsync(std::function<Status(store::WriteTxn&)> fn,
                              std::function<void(const Status&)> done) {
  Impl& m = *impl_;
  m.store.Write(
      [&m, fn = std::move(fn)](store::WriteTxn& txn) -> Status {
        std::unique_lock lock(m.cache.mutex);
        NUDGE_TRY(m.Begin(txn));
        return fn(txn);
      },
      [done = std::move(done)](Status s) {
        if (done) done(s);
      });
}

uint64_t Engine::EvaluateAllForBenchmark(WorkspaceId wsid) {
  Impl& m = *impl_;
  std::shared_lock lock(m.cache.mutex);
  const Workspace* ws = m.FindWs(wsid);
  if (!ws) return 0;
  const Millis now = m.clock.NowMillis();
  uint64_t members = 0;
  m.cache.ForEach(wsid, [&](ContactId id, const profile::ContactState& st) {
    Impl::ContactEnv env(m, *ws, id, st, m.FindRt(id), now);
    for (const auto& s : ws->segments) members += s->def.condition->Matches(env);
  });
  return members;
}

}  // namespace nudge::segment
