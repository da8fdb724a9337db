// Engine: runs journeys. Each contact that triggers a journey gets an instance that walks the
// journey's steps; sends become outbox messages, waits become durable timers, and every step
// taken is written in the same transaction as the event (or timer) that caused it, so a crash
// never runs a step twice: the outbox's idempotency key makes a replayed send a no-op.
//
// A contact stays on the journey version it entered with; editing a journey makes a new
// version. Paused journeys take no one in and hold their instances where they are until
// resumed; archived journeys end their instances.
//
// Threading: the engine is an observer downstream of the segment engine, so its callbacks run
// on the store's writer thread while cache.mutex is held. The definition methods and the
// timer thread submit store writes and take the locks themselves; the read methods may be
// called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/metrics.h"
#include "journey/definition.h"
#include "journey/policies.h"
#include "profile/contact_cache.h"
#include "profile/observer.h"
#include "segment/engine.h"
#include "store/store.h"

namespace nudge::journey {

struct StepStats {
  std::string step;
  std::string kind;
  int64_t entered = 0;
  int64_t waiting = 0;  // there now
  int64_t completed = 0;
  int64_t exited = 0;
  int64_t converted = 0;
  int64_t skipped = 0;  // sends skipped: capped, late
};

struct JourneyInfo {
  std::string id;
  int64_t version = 0;
  std::string status;  // active, paused, archived
  std::shared_ptr<const Journey> definition;
  std::string source;  // the definition as written
  Millis updated_at = 0;
};

struct EngineOptions {
  bool background_threads = true;
  // Whether a template is transactional (a receipt, a password reset): its sends skip quiet
  // hours and frequency caps, as delivery's checks do. Called holding the engine's lock; may
  // be empty (no template is).
  std::function<bool(store::WorkspaceId, const std::string& template_id)> transactional;
  // The lateness past which a send is skipped when no journey says otherwise.
  Millis default_max_lateness = 24LL * 3600 * 1000;
};

class Engine final : public profile::ContactObserver {
 public:
  Engine(store::Store& store, segment::Engine& segments, profile::ContactCache& cache,
         const core::Clock& clock, core::MetricsRegistry* metrics, EngineOptions options = {});
  ~Engine() override;

  // Loads journeys, policies and active instances (with their timers); starts the timer
  // thread. Overdue timers fire at once (sends more than max_lateness late are skipped).
  Status Load();
  // How many times memory was rebuilt from the store after a write rolled back (also
  // nudge_engine_reloads_total{engine="journeys"}).
  uint64_t Reloads() const;
  void Stop();

  // ---- definitions ----
  // Parses, checks and stores a journey; a changed definition becomes a new version.
  // `source` names the text in errors. Refuses journeys naming unknown segments.
  Result<JourneyInfo> PutJourney(store::WorkspaceId ws, std::string_view text,
                                 std::string_view source, std::optional<std::string_view> id);
  Result<JourneyInfo> GetJourney(store::WorkspaceId ws, const std::string& id) const;
  std::vector<JourneyInfo> ListJourneys(store::WorkspaceId ws) const;
  // "active" (resume), "paused", "archived".
  Status SetStatus(store::WorkspaceId ws, const std::string& id, const std::string& status);
  Result<std::vector<StepStats>> Stats(store::WorkspaceId ws, const std::string& id) const;
  Status PutPolicies(store::WorkspaceId ws, Policies policies);
  Policies GetPolicies(store::WorkspaceId ws) const;
  // Starts the journey for a contact (an `api: true` trigger); `data` (JSON object) is the
  // trigger's properties. Returns the instance id, or 0 when the entry rules kept it out.
  Result<int64_t> Trigger(store::WorkspaceId ws, const std::string& id, store::ContactId contact,
                          const std::string& data);

  // Called after each commit that queued outbox messages (the delivery pipeline wakes up).
  // Set before Load.
  void SetOutboxListener(std::function<void()> listener);

  // ---- time ----
  Status RunDue();
  std::optional<Millis> NextDue() const;
  size_t PendingTimers() const;

  // ---- ContactObserver ----
  Status OnContactCreated(store::WriteTxn& txn, const store::Contact& contact) override;
  Status OnContactChanged(store::WriteTxn& txn, const store::Contact& contact,
                          std::string_view previous_traits) override;
  Status OnEvent(store::WriteTxn& txn, const store::Event& event) override;
  Status OnContactsMerged(store::WriteTxn& txn, store::ContactId from,
                          store::ContactId into) override;
  Status OnContactDeleted(store::WriteTxn& txn, store::ContactId id) override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nudge::journey
