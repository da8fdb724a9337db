// Pipeline: how an accepted tracking request becomes durable, then applied.
//
//   HTTP thread     Accept(): the request, checked (CheckRequest) and authenticated, is queued
//                   for the inbox
//   inbox thread    commits it (fsync) -> the client gets its 200 -> queued for applying
//   feeder thread   builds the messages (ParseRequest) and hands requests to the store in
//                   inbox order, one write each
//   store writer    applies the messages (events, contacts, segments, journeys, outbox) and
//                   moves the store's applied mark to the request's inbox id, in one
//                   transaction -> the inbox may delete the row
//
// After a crash, Recover() queues the inbox rows past the store's applied mark again, so every
// acknowledged request is applied exactly once. A request whose application fails with a
// transient error (kUnavailable: a full disk, a busy database) is retried, with every request
// after it, until it succeeds; one that fails otherwise (a bug) is logged, counted and skipped
// so that it cannot hold up the rest.
//
// Reads that must see what was acknowledged (the admin API) go through AfterApplied().
// Requests acknowledged but not yet applied form the backlog; past `max_backlog_events`,
// Accept() refuses with kUnavailable (HTTP 503 with Retry-After) until it shrinks.
//
// Thread-safety: Pipeline is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/metrics.h"
#include "core/result.h"
#include "ingest/message.h"
#include "ingest/parser.h"
#include "store/inbox.h"
#include "store/store.h"

namespace nudge::profile {
class Applier;
}

namespace nudge::ingest {

struct PipelineOptions {
  size_t max_backlog_events = 262144;
  // The bodies the backlog holds in memory until they are built into messages (as stored:
  // batches compressed), so that large events cannot fill the memory within the events' bound.
  size_t max_backlog_bytes = 256 << 20;
  Limits limits;  // to parse the inbox's rows again at recovery
};

class Pipeline {
 public:
  using Done = std::function<void(Status)>;

  Pipeline(store::Store& store, store::Inbox& inbox, const profile::Applier& applier,
           core::MetricsRegistry& metrics, PipelineOptions options);
  ~Pipeline();

  // Queues the inbox rows past the store's applied mark (what a crash left unapplied) and
  // starts the feeder thread. Call once, before Accept. Returns how many requests it queued.
  Result<int64_t> Start();

  // Makes the request durable; `done` runs (on the inbox thread) once it is, with Ok, or with
  // the error to answer (kUnavailable when the backlog is full or the inbox failed).
  // The body must have passed CheckRequest (with the pipeline's limits), which counted its
  // `events`.
  void Accept(store::WorkspaceId ws, Endpoint endpoint, core::Millis received_at, std::string body,
              size_t events, Done done);

  // Runs `fn` once every request acknowledged before this call has been applied: at once
  // (on the calling thread) when nothing is waiting, else on the feeder thread.
  void AfterApplied(std::function<void()> fn);

  // Waits up to `timeout_ms` for the backlog to be applied, then stops the feeder. What is
  // left stays in the inbox for the next Start. Call after the HTTP server has stopped.
  void Stop(int timeout_ms);

  // An erasure: the inbox's segment being written is closed, so that the request bodies in it
  // (the erased contact's among them) are deleted within a second once applied instead of when
  // the segment is old enough (Inbox::Roll).
  void ForgetAppliedBodies() { inbox_.Roll(); }

  // Acknowledged and not yet applied.
  size_t BacklogEvents() const { return backlog_events_.load(); }
  size_t BacklogBytes() const { return backlog_bytes_.load(); }

  // While applying keeps failing (a full disk, a damaged database): for how long and the last
  // error. Once `stalled` (failing for kStalledAfterUs or more), /healthz reports it and reads
  // that wait for the backlog (read-your-writes) answer with what is applied instead.
  static constexpr int64_t kStalledAfterUs = 5'000'000;
  struct Failing {
    double seconds = 0;
    bool stalled = false;
    std::string error;
  };
  std::optional<Failing> FailingNow() const;

 private:
  struct Entry {
    // The request as stored in the inbox (id, workspace, endpoint, arrival, body). The feeder
    // thread builds `messages` from the body (and lets the body go) before the first hand to
    // the store.
    store::InboxRecord record;
    int64_t accepted_us = 0;  // monotonic, when Accept was called
    size_t events = 0;
    bool built = false;
    std::vector<Message> messages;
    // Set on the store's writer thread, read there and (after the write finished) by the
    // feeder under mutex_.
    bool applied = false;
    bool own_failure = false;  // applying it failed (not refused for an earlier failure)
    bool transient = false;    // ... with kUnavailable
    bool skip = false;         // failed for good: the write only moves the applied mark
    // Handed again after its group failed: applied in a savepoint of its own (kAlone), so that
    // the requests before a failing one commit while it waits for the storage.
    bool alone = false;
    size_t accepted = 0, duplicates = 0;
  };

  void Acknowledged(const std::shared_ptr<Entry>& entry);
  // On the feeder thread: builds the entry's messages, or marks it to be skipped.
  void Build(Entry& entry);
  void FeederLoop();
  Status ApplyOne(store::WriteTxn& txn, Entry& entry, uint64_t generation);
  void Finished(const std::shared_ptr<Entry>& entry, uint64_t generation, const Status& status);
  // Waiters whose target is applied, taken out of waiters_.
  std::vector<std::function<void()>> TakeReadyWaiters();
  // Under mutex_: a backlog large enough to trim after has drained.
  bool TrimDue() const;
  // Under mutex_: the feeder has something to do besides handing requests to the store (run
  // waiters, trim, hand failed requests again).
  bool ChoresDue() const;

  store::Store& store_;
  store::Inbox& inbox_;
  const profile::Applier& applier_;
  PipelineOptions options_;

  core::Counter* accepted_;
  core::Counter* duplicates_;
  core::Counter* skipped_;
  core::Counter* retries_;
  core::Histogram* apply_lag_;

  std::atomic<size_t> backlog_events_{0};
  std::atomic<size_t> backlog_bytes_{0};  // of the bodies of entries not built yet
  // The generation in which a write failed (store writer thread only). Later writes of that
  // generation refuse to apply, which keeps what is applied a prefix of the inbox.
  uint64_t failed_generation_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Entry>> unsubmitted_;  // GUARDED_BY(mutex_), in id order
  std::deque<std::shared_ptr<Entry>> in_store_;     // GUARDED_BY(mutex_): submitted, in id order
  size_t unfinished_ = 0;                           // GUARDED_BY(mutex_): of in_store_
  bool failure_seen_ = false;     // GUARDED_BY(mutex_): a write of in_store_ failed
  int64_t failing_since_us_ = 0;  // GUARDED_BY(mutex_): monotonic; 0 while requests apply
  std::string last_error_;        // GUARDED_BY(mutex_)
  int64_t acknowledged_ = 0;      // GUARDED_BY(mutex_): highest id acked
  int64_t applied_ = 0;           // GUARDED_BY(mutex_): every id up to it
  size_t peak_backlog_ = 0;       // GUARDED_BY(mutex_): the largest backlog since the last trim
  uint64_t generation_ = 1;       // GUARDED_BY(mutex_)
  std::multimap<int64_t, std::function<void()>> waiters_;  // GUARDED_BY(mutex_), by target
  bool stopping_ = false;                                  // GUARDED_BY(mutex_)
  std::chrono::steady_clock::time_point stop_deadline_{};  // GUARDED_BY(mutex_)
  std::thread feeder_;
};

}  // namespace nudge::ingest
