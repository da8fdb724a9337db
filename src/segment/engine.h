// Engine: keeps every contact's segment memberships, lead score and lifecycle stage current,
// in the same write that stores the event or trait change causing them, and as time passes
// (a window sliding, a score decaying) by timer rather than by polling.
//
// What it keeps, per workspace: the segment, scoring and stage definitions (compiled), one
// membership bitmap per segment, and per contact the score's state and the stage. Contacts'
// traits and behavioural aggregates live in the profile::ContactCache it is given.
//
// Changes it makes are events too: `Segment Entered`, `Segment Exited`, `Stage Changed` and
// `Lead Qualified` are stored on the contact (so journeys can start on them and conditions can
// count them) and passed on to the downstream observer.
//
// Threading: every mutation runs on the store's writer thread, inside a write, holding
// cache.mutex exclusively. The read methods (for the API) take it shared and may be called
// from any thread. A background driver thread computes new or changed segments in small
// writes, so ingest goes on meanwhile, and a timer thread submits due re-evaluations.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/metrics.h"
#include "profile/contact_cache.h"
#include "profile/observer.h"
#include "segment/definitions.h"
#include "store/store.h"

namespace nudge::segment {

struct SegmentInfo {
  SegmentDef def;
  int64_t version = 0;
  std::string status;  // "ready", or "computing" while existing contacts are evaluated
  uint64_t members = 0;
  Millis updated_at = 0;
};

struct ScoreView {
  double score = 0;
  std::string qualification;  // "", "MQL" or "SQL"
  std::vector<std::pair<std::string, double>> by_rule;
};

struct ContactView {
  std::vector<std::string> segments;
  ScoreView score;
  std::string stage;  // "" when none
  Millis stage_since = 0;
};

struct Preview {
  uint64_t count = 0;
  std::vector<store::ContactId> sample;
  // Answered from the trait columns (a condition on traits only, see trait_columns.h) rather
  // than by evaluating every contact.
  bool from_columns = false;
};

struct EngineOptions {
  // Contacts evaluated per background write when a segment is (re)computed; events per
  // write when a new behavioural term is computed from the history.
  size_t contacts_per_chunk = 5000;
  size_t events_per_chunk = 20000;
  // Derived events (Segment Entered, ...) may cause further changes; how deep that may go.
  int max_cascade = 4;
  // Whether to run the timer and background threads (tests drive them by hand).
  bool background_threads = true;
};

class Engine final : public profile::ContactObserver {
 public:
  Engine(store::Store& store, profile::ContactCache& cache, const core::Clock& clock,
         core::MetricsRegistry* metrics, EngineOptions options = {});
  ~Engine() override;

  // Everything downstream of segments (journeys) observes through this one; may be null.
  void SetDownstream(profile::ContactObserver* downstream) { downstream_ = downstream; }

  // Start-up, before serving: loads definitions, contacts and memberships, replays the events
  // into the behavioural aggregates and scores, then reconciles (evaluates everyone; changes
  // that happened while nudge was down are applied and emitted). Starts the threads.
  Status Load();
  // How many times memory was rebuilt from the store after a write rolled back (also
  // nudge_engine_reloads_total{engine="segments"}).
  uint64_t Reloads() const;
  // Stops the threads. The store must still be open.
  void Stop();

  // ---- definitions (admin API and `nudge apply`) ----
  // Validates (known segments, no cycles), stores the definition and starts computing it over
  // existing contacts in the background. Unchanged definitions are left alone.
  Result<SegmentInfo> PutSegment(store::WorkspaceId ws, SegmentDef def);
  Status DeleteSegment(store::WorkspaceId ws, const std::string& id);
  Result<SegmentInfo> GetSegment(store::WorkspaceId ws, const std::string& id) const;
  std::vector<SegmentInfo> ListSegments(store::WorkspaceId ws) const;
  Status PutScoring(store::WorkspaceId ws, ScoringDef def);
  Status PutStages(store::WorkspaceId ws, StagesDef def);
  ScoringDef GetScoring(store::WorkspaceId ws) const;
  StagesDef GetStages(store::WorkspaceId ws) const;
  // Contacts per stage, in stage order.
  std::vector<std::pair<std::string, uint64_t>> StageCounts(store::WorkspaceId ws) const;
  // Whether a segment exists (for validating references elsewhere).
  bool HasSegment(store::WorkspaceId ws, const std::string& id) const;

  // The trait columns of every workspace (see trait_columns.h): how many paths are kept, and
  // their memory.
  struct ColumnStats {
    size_t kept = 0;
    size_t bytes = 0;
  };
  ColumnStats TraitColumnStats() const;
  // Evaluates a condition over the workspace's contacts without saving anything.
  Result<Preview> PreviewCondition(store::WorkspaceId ws, const std::string& condition,
                                   size_t sample);
  ContactView View(store::ContactId id) const;

  // ---- time ----
  // Re-evaluates the contacts whose timers are due at `now` (in a store write). The timer
  // thread calls it; tests on a virtual clock call it after advancing.
  Status RunDue();
  std::optional<Millis> NextDue() const;
  // Blocks until background computations queued so far are done (tests, `nudge apply`).
  void WaitIdle();

  // ---- ContactObserver ----
  Status OnContactCreated(store::WriteTxn& txn, const store::Contact& contact) override;
  Status OnContactChanged(store::WriteTxn& txn, const store::Contact& contact,
                          std::string_view previous_traits) override;
  Status OnEvent(store::WriteTxn& txn, const store::Event& event) override;
  // The contact's state and score bookkeeping start coming from memory (called on the
  // store's writer thread, the only one that changes them).
  void Prefetch(store::ContactId id) override;
  Status OnContactsMerged(store::WriteTxn& txn, store::ContactId from,
                          store::ContactId into) override;
  Status OnContactDeleted(store::WriteTxn& txn, store::ContactId id) override;

  // Evaluates every segment for every contact of ws in memory (no writes): the benchmark's
  // full rebuild. Returns the number of memberships.
  uint64_t EvaluateAllForBenchmark(store::WorkspaceId ws);

  // Records a change of consent (store, memory, re-evaluation) and, when `event` is not empty,
  // stores that event on the contact ("Unsubscribed", "Subscription Confirmed"), all in one
  // write it makes itself.
  Status ApplyConsent(const store::ConsentRecord& record, const std::string& event,
                      const std::string& properties_json);
  // Stores a derived event on a contact (tracking: Email Opened, Email Link Clicked, ...) and
  // processes it, in a write it makes itself. `key` makes its messageId unique.
  Status Emit(store::ContactId id, const std::string& name, const std::string& properties_json,
              const std::string& key);

  // Whether the contact may be sent messages on `channel` (and `topic`, when not empty): the
  // recorded consent, else the default (see subscribed() in docs/conditions.md). False for an
  // unknown contact. Takes cache.mutex (shared).
  bool Subscribed(store::ContactId id, std::string_view channel, std::string_view topic) const;
  // The channels whose subscriptions need confirming (policies double_opt_in): a contact with
  // no recorded choice for one of them is not subscribed to it.
  void SetDoubleOptIn(store::WorkspaceId ws, std::set<std::string> channels);

  // Runs fn in a store write with the engine's lock held, so that fn may call EmitLocked and
  // the other Locked methods (delivery outcomes: the message row and its event in one commit).
  Status WriteLocked(const std::function<Status(store::WriteTxn&)>& fn);
  // The same, without waiting for the commit: done (if set) is called with its outcome.
  void WriteLockedAsync(std::function<Status(store::WriteTxn&)> fn,
                        std::function<void(const Status&)> done);

  // ---- for observers downstream (journeys) ----
  // Adopts a condition's behavioural terms; new ones are computed from the history in the
  // background. Takes cache.mutex: call outside observer callbacks.
  void Adopt(const rules::Condition& condition);

  // The methods below are for observer callbacks, which run while the engine holds
  // cache.mutex: they take no lock.
  //
  // Evaluates a condition for a contact with `event_body` (a stored event's JSON; may be null)
  // in scope. With `event_terms_mean_this_event`, a term `event "X" where C` (no window) is
  // true only when the event in scope is an X satisfying C: "when this happens" rather than
  // "if it ever happened" (journey exits and waits).
  bool MatchesLocked(const rules::Condition& condition, store::ContactId id,
                     const std::string* event_body, bool event_terms_mean_this_event) const;
  // When the condition's result could next change by time alone, for this contact.
  std::optional<Millis> NextChangeLocked(const rules::Condition& condition,
                                         store::ContactId id) const;
  bool InSegmentLocked(store::WorkspaceId ws, const std::string& segment,
                       store::ContactId id) const;
  // The contact that now stands for id (after merges).
  store::ContactId ResolveLocked(store::ContactId id) const;
  // The contact's traits (JSON text), or null when it has no state.
  const std::string* TraitsLocked(store::ContactId id) const;
  // Stores a derived event on the contact and processes it like any other event (segments,
  // then downstream). `key` makes its messageId unique and stable. properties_json must be a
  // JSON object's text (it is stored as given; Emit and ApplyConsent check theirs).
  // stable: the event's messageId is "nudge:<name>:<key>:<contact>", so emitting the same key
  // again stores nothing (StableEventId tells whether it was stored already). Otherwise it is
  // "nudge:~<name>:<key>:<contact>:<cause>", unique by its cause and not checked for
  // duplicates by the store.
  Status EmitLocked(store::WriteTxn& txn, store::ContactId id, const std::string& name,
                    const std::string& properties_json, const std::string& key,
                    bool stable = false);
  static std::string StableEventId(const std::string& name, const std::string& key,
                                   store::ContactId id) {
    return DerivedEventId(store::kDerivedPrefix, name, key, id);
  }
  // "<prefix><name>:<key>:<contact>"
  static std::string DerivedEventId(std::string_view prefix, const std::string& name,
                                    const std::string& key, store::ContactId id) {
    std::string out(prefix);
    out += name;
    out += ':';
    out += key;
    out += ':';
    out += std::to_string(id);
    return out;
  }
  // A downstream observer changed the contact (a journey's update step): re-evaluate.
  Status ContactChangedLocked(store::WriteTxn& txn, const store::Contact& contact);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  profile::ContactObserver* downstream_ = nullptr;
};

}  // namespace nudge::segment
