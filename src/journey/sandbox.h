// Sandbox: the whole pipeline (store, contacts, segments, scores, stages, journeys) on a
// virtual clock in a private temporary store. `nudge simulate` rehearses journeys in one
// against recorded events; scenario tests drive one step by step. Time moves only when told,
// and every timer due on the way fires at its due time, so three days take microseconds and
// every run is the same.
//
// Not thread-safe: one thread drives a sandbox.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "ingest/parser.h"
#include "journey/engine.h"
#include "profile/applier.h"
#include "profile/contact_cache.h"
#include "segment/engine.h"
#include "store/store.h"

namespace nudge::journey {

class Sandbox {
 public:
  // A sandbox starting at `start`, its store in a new temporary directory (removed on
  // destruction), or in `dir` when given (kept).
  static Result<std::unique_ptr<Sandbox>> Create(Millis start, const std::string& dir = "");
  ~Sandbox();

  // Applies a workspace directory as `nudge apply -f` would: segments/*.yaml, scoring.yaml,
  // stages.yaml, policies.yaml, journeys/*.yaml. Errors name the file.
  Status ApplyDirectory(const std::string& dir);
  Status PutSegment(const std::string& yaml, const std::string& source);
  Status PutJourney(const std::string& yaml, const std::string& source);
  Status PutPolicies(const std::string& yaml, const std::string& source);
  Status PutScoring(const std::string& yaml, const std::string& source);
  Status PutStages(const std::string& yaml, const std::string& source);

  // Sends one Segment message (a JSON object with its "type"), as received now.
  Status Send(const std::string& message_json);
  // The message as Send parses it, for a caller that applies it in a write of its own
  // (with applier()), as the ingest pipeline does.
  Result<std::vector<ingest::Message>> Parse(const std::string& message_json);
  profile::Applier& applier() { return *applier_; }
  // Moves the clock to `t` (never back), firing every timer due on the way at its time.
  Status AdvanceTo(Millis t);
  Status Advance(Millis delta) { return AdvanceTo(Now() + delta); }
  Millis Now() const { return clock_.NowMillis(); }
  const core::Clock& clock() const { return clock_; }

  // The contact of a user id (or anonymous id), or 0.
  store::ContactId ContactOf(const std::string& key);
  std::string LabelOf(store::ContactId id);  // its user id, else an anonymous id, else "#id"
  Result<std::vector<store::Message>> Messages();
  Result<std::vector<store::Instance>> Instances(const std::string& journey);
  Result<std::vector<std::tuple<std::string, std::string, Millis>>> Path(int64_t instance);
  Result<std::vector<store::Event>> Events(store::ContactId id);

  store::WorkspaceId workspace() const { return ws_; }
  Engine& journeys() { return *journeys_; }
  segment::Engine& segments() { return *segments_; }
  store::Store& store() { return *store_; }

 private:
  Sandbox(Millis start) : clock_(start) {}

  core::VirtualClock clock_;
  std::string dir_;
  bool remove_dir_ = false;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<profile::ContactCache> cache_;
  std::unique_ptr<segment::Engine> segments_;
  std::unique_ptr<Engine> journeys_;
  std::unique_ptr<profile::Applier> applier_;
  std::set<std::string> transactional_;  // ids of DIR/templates/ marked transactional
  store::WorkspaceId ws_ = 0;
  uint64_t sent_ = 0;
};

}  // namespace nudge::journey
