#include "ingest/pipeline.h"

#include <malloc.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "ingest/body_codec.h"
#include "profile/applier.h"

namespace nudge::ingest {
namespace {

// Requests handed to the store at once: enough to fill its largest groups, few enough that
// other writers (timers, the admin API) do not queue behind a whole backlog.
constexpr size_t kMaxInStore = 2048;
constexpr int kMaxRetryMs = 5000;
// Once a backlog of at least this many events has been applied, the memory it held is given
// back to the system (malloc_trim): a burst should not leave the server larger for good.
constexpr size_t kTrimAfterEvents = 65536;

// The body of a stored request as it was received: the record's own, or its compressed
// form expanded into `expanded`.
Result<std::string_view> ReceivedBody(const store::InboxRecord& r, Endpoint endpoint,
                                      const Limits& limits, std::string& expanded) {
  if (!r.compressed) return std::string_view(r.body);
  NUDGE_ASSIGN_OR_RETURN(expanded, DecompressBody(r.body, MaxBodyBytes(endpoint, limits)));
  return std::string_view(expanded);
}

}  // namespace

Pipeline::Pipeline(store::Store& store, store::Inbox& inbox, const profile::Applier& applier,
                   core::MetricsRegistry& metrics, PipelineOptions options)
    : store_(store), inbox_(inbox), applier_(applier), options_(std::move(options)) {
  accepted_ = &metrics.GetCounter("nudge_events_accepted_total", "Events stored.");
  duplicates_ = &metrics.GetCounter("nudge_events_duplicate_total",
                                    "Events skipped because their messageId was already stored.");
  skipped_ = &metrics.GetCounter(
      "nudge_ingest_skipped_total",
      "Acknowledged requests that could not be applied for good (each one is logged).");
  retries_ = &metrics.GetCounter(
      "nudge_ingest_apply_retries_total",
      "Times applying acknowledged requests failed and was tried again from the first unapplied.");
  apply_lag_ = &metrics.GetHistogram(
      "nudge_ingest_apply_lag_seconds",
      "From a tracking request's acceptance to its events being applied to contacts.",
      {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30});
  metrics.AddGauge("nudge_queue_depth", "Work waiting in a queue.", "{queue=\"ingest_backlog\"}",
                   [this] { return static_cast<double>(BacklogEvents()); });
  metrics.AddGauge("nudge_ingest_backlog_bytes",
                   "Bytes of request bodies acknowledged and not yet built into messages, held in "
                   "memory (limits.max_backlog_bytes).",
                   "", [this] { return static_cast<double>(BacklogBytes()); });
}

Pipeline::~Pipeline() { Stop(0); }

Result<int64_t> Pipeline::Start() {
  NUDGE_ASSIGN_OR_RETURN(const int64_t mark, store_.ReadMark(store::kInboxAppliedMark));
  int64_t queued = 0;
  std::lock_guard lock(mutex_);
  applied_ = acknowledged_ = mark;
  NUDGE_TRY(inbox_.Scan(mark, [&](const store::InboxRecord& r) -> Status {
    auto entry = std::make_shared<Entry>();
    entry->record = r;
    entry->accepted_us = core::MonotonicMicros();
    Status problem = Status::Invalid("unknown endpoint", r.endpoint);
    if (const auto endpoint = EndpointFromPath(r.endpoint)) {
      std::string expanded;
      auto body = ReceivedBody(r, *endpoint, options_.limits, expanded);
      auto checked = body ? CheckRequest(*endpoint, *body, options_.limits)
                          : Result<CheckedRequest>(Err(body.error()));
      if (checked) {
        entry->events = checked->messages;
      } else {
        problem = checked.error();
      }
    }
    if (entry->events == 0) {
      // Only a change of limits between the acknowledgement and now can get here.
      spdlog::error("inbox request {} ({}) no longer parses and is skipped: {}", r.id, r.endpoint,
                    problem.ToString());
      skipped_->Add();
      entry->skip = entry->built = true;
      entry->record.body.clear();
    }
    backlog_events_ += entry->events;
    backlog_bytes_ += entry->record.body.size();
    unsubmitted_.push_back(std::move(entry));
    acknowledged_ = r.id;
    ++queued;
    return Status::Ok();
  }));
  if (queued > 0)
    spdlog::warn("applying {} acknowledged requests left in the inbox (after id {})", queued, mark);
  feeder_ = std::thread([this] { FeederLoop(); });
  return queued;
}

void Pipeline::Accept(store::WorkspaceId ws, Endpoint endpoint, core::Millis received_at,
                      std::string body, size_t events, Done done) {
  const size_t backlog = backlog_events_.load();
  if (backlog > 0 && backlog + events > options_.max_backlog_events) {
    return done(Status::Unavailable("nudge is " + std::to_string(backlog) +
                                    " events behind (ingest backlog full); retry after a second"));
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return done(Status::Unavailable("the server is shutting down; retry"));
  }
  // Compressed here, on the HTTP thread, so that the inbox's single thread writes less.
  const bool compress = body.size() >= kCompressFrom;
  if (compress) body = CompressBody(body);
  const size_t held = backlog_bytes_.load();
  if (held > 0 && held + body.size() > options_.max_backlog_bytes) {
    return done(Status::Unavailable("nudge holds " + std::to_string(held >> 20) +
                                    " MiB of requests not yet applied (ingest backlog full); "
                                    "retry after a second"));
  }
  backlog_events_ += events;
  backlog_bytes_ += body.size();
  auto entry = std::make_shared<Entry>();
  entry->accepted_us = core::MonotonicMicros();
  entry->events = events;
  store::InboxRecord record{
      0, ws, std::string(EndpointPath(endpoint)), received_at, std::move(body), compress};
  inbox_.Append(std::move(record), [this, entry, done = std::move(done)](
                                       Result<int64_t> id, store::InboxRecord record) {
    if (!id) {
      backlog_events_ -= entry->events;
      backlog_bytes_ -= record.body.size();  // the record comes back as it was given
      return done(id.error());
    }
    entry->record = std::move(record);  // its id set
    Acknowledged(entry);
    done(Status::Ok());
  });
}

void Pipeline::Build(Entry& entry) {
  entry.built = true;
  const store::InboxRecord& r = entry.record;
  const auto endpoint = EndpointFromPath(r.endpoint);
  Result<ParsedRequest> parsed = Err(Status::Invalid("unknown endpoint", r.endpoint));
  if (endpoint) {
    std::string expanded;
    auto body = ReceivedBody(r, *endpoint, options_.limits, expanded);
    parsed = body ? ParseRequest(*endpoint, *body, r.received_at, options_.limits)
                  : Result<ParsedRequest>(Err(body.error()));
  }
  backlog_bytes_ -= entry.record.body.size();
  std::string().swap(entry.record.body);
  if (parsed && parsed->messages.size() == entry.events) {
    entry.messages = std::move(parsed->messages);
    return;
  }
  // CheckRequest passed this body; ParseRequest makes the same checks.
  spdlog::error("inbox request {} passed its checks but does not parse and is skipped: {}", r.id,
                parsed ? "a different message count" : parsed.error().ToString());
  skipped_->Add();
  entry.skip = true;
}

void Pipeline::Acknowledged(const std::shared_ptr<Entry>& entry) {
  std::lock_guard lock(mutex_);
  acknowledged_ = entry->record.id;
  unsubmitted_.push_back(entry);
  peak_backlog_ = std::max(peak_backlog_, backlog_events_.load());
  if (in_store_.size() < kMaxInStore && !failure_seen_) cv_.notify_one();
}

std::optional<Pipeline::Failing> Pipeline::FailingNow() const {
  std::lock_guard lock(mutex_);
  if (failing_since_us_ == 0) return std::nullopt;
  const int64_t failing_us = core::MonotonicMicros() - failing_since_us_;
  return Failing{static_cast<double>(failing_us) / 1e6, failing_us >= kStalledAfterUs, last_error_};
}

void Pipeline::AfterApplied(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    // While applying fails, a read answers with what is applied rather than wait without end.
    const bool failing =
        failing_since_us_ != 0 && core::MonotonicMicros() - failing_since_us_ >= kStalledAfterUs;
    if (acknowledged_ > applied_ && !failing) {
      waiters_.emplace(acknowledged_, std::move(fn));
      return;
    }
  }
  fn();
}

bool Pipeline::TrimDue() const {
  return peak_backlog_ >= kTrimAfterEvents && backlog_events_.load() == 0;
}

bool Pipeline::ChoresDue() const {
  return (failure_seen_ && unfinished_ == 0) || TrimDue() ||
         (!waiters_.empty() && waiters_.begin()->first <= applied_);
}

std::vector<std::function<void()>> Pipeline::TakeReadyWaiters() {
  std::vector<std::function<void()>> ready;
  while (!waiters_.empty() && waiters_.begin()->first <= applied_) {
    ready.push_back(std::move(waiters_.begin()->second));
    waiters_.erase(waiters_.begin());
  }
  return ready;
}

void Pipeline::FeederLoop() {
  pthread_setname_np(pthread_self(), "ingest");
  std::unique_lock lock(mutex_);
  int retry_ms = 0;
  auto can_submit = [this] {
    return !failure_seen_ && !unsubmitted_.empty() && in_store_.size() < kMaxInStore;
  };
  auto has_work = [&] { return can_submit() || ChoresDue(); };
  auto drained = [this] { return unsubmitted_.empty() && in_store_.empty(); };
  for (;;) {
    if (!stopping_) {
      cv_.wait(lock, [&] { return stopping_ || has_work(); });
    }
    if (failing_since_us_ == 0) retry_ms = 0;  // something applied: the next failure waits 100 ms
    if (stopping_) {
      cv_.wait_until(lock, stop_deadline_, [&] { return drained() || has_work(); });
      if (drained() || std::chrono::steady_clock::now() >= stop_deadline_) break;
    }
    if (TrimDue()) {
      peak_backlog_ = 0;
      lock.unlock();
      malloc_trim(0);
      lock.lock();
      continue;
    }
    if (auto ready = TakeReadyWaiters(); !ready.empty()) {
      lock.unlock();
      for (auto& fn : ready) fn();
      lock.lock();
      continue;
    }
    if (failure_seen_ && unfinished_ == 0) {
      // Every write from the failed one on was refused: hand them all again, in order. A
      // failure no request owns (the commit itself) is the storage's: waited out too.
      bool transient = std::none_of(in_store_.begin(), in_store_.end(),
                                    [](const auto& e) { return e->own_failure; });
      for (auto& e : in_store_) {
        if (e->own_failure) {
          if (e->transient) {
            transient = true;
          } else {
            spdlog::error("inbox request {} could not be applied and is skipped", e->record.id);
            skipped_->Add();
            e->skip = true;
          }
        }
        e->applied = e->own_failure = e->transient = false;
        e->alone = true;
      }
      unsubmitted_.insert(unsubmitted_.begin(), in_store_.begin(), in_store_.end());
      in_store_.clear();
      failure_seen_ = false;
      ++generation_;
      retries_->Add();
      if (transient) {
        const int64_t now = core::MonotonicMicros();
        if (failing_since_us_ == 0) failing_since_us_ = now;
        // Reads waiting for the backlog are answered with what is applied (FailingNow).
        std::vector<std::function<void()>> waiting;
        if (now - failing_since_us_ >= kStalledAfterUs) {
          for (auto& [target, fn] : waiters_) waiting.push_back(std::move(fn));
          waiters_.clear();
        }
        if (!waiting.empty()) {
          lock.unlock();
          for (auto& fn : waiting) fn();
          lock.lock();
        }
        retry_ms = std::min(std::max(retry_ms * 2, 100), kMaxRetryMs);
        cv_.wait_for(lock, std::chrono::milliseconds(retry_ms), [this] { return stopping_; });
      }
      continue;
    }
    if (!can_submit()) continue;
    std::vector<std::shared_ptr<Entry>> batch;
    while (!unsubmitted_.empty() && in_store_.size() < kMaxInStore) {
      batch.push_back(unsubmitted_.front());
      in_store_.push_back(std::move(unsubmitted_.front()));
      unsubmitted_.pop_front();
    }
    unfinished_ += batch.size();
    const uint64_t generation = generation_;
    lock.unlock();
    for (auto& e : batch) {
      if (!e->built) Build(*e);
      // Applied without a savepoint each: a failure rolls back its group, and everything from
      // the failed request on is handed again below, as after a failed commit. Handed again,
      // each has a savepoint, so one that keeps failing does not hold back those before it.
      store_.Write(
          [this, e, generation](store::WriteTxn& t) { return ApplyOne(t, *e, generation); },
          [this, e, generation](Status s) { Finished(e, generation, s); },
          e->alone ? store::Store::Isolation::kAlone : store::Store::Isolation::kWithGroup);
    }
    lock.lock();
  }
  waiters_.clear();  // the server has stopped: nobody is waiting for these answers
}

Status Pipeline::ApplyOne(store::WriteTxn& txn, Entry& entry, uint64_t generation) {
  if (failed_generation_ == generation)
    return Status::Unavailable("an earlier tracking request is not applied yet");
  auto fail = [&](const Status& s) {
    entry.own_failure = true;
    entry.transient = s.code() == Code::kUnavailable;
    if (entry.transient) {
      std::lock_guard lock(mutex_);
      last_error_ = s.ToString();
    }
    failed_generation_ = generation;
    spdlog::warn("applying inbox request {} failed: {}", entry.record.id, s.ToString());
    return s;
  };
  if (!entry.skip) {
    auto result = applier_.Apply(txn, entry.record.workspace, entry.messages);
    if (!result) return fail(result.error());
    entry.accepted = result->accepted;
    entry.duplicates = result->duplicates;
  }
  if (Status s = txn.SetMark(store::kInboxAppliedMark, entry.record.id); !s.ok()) return fail(s);
  return Status::Ok();
}

void Pipeline::Finished(const std::shared_ptr<Entry>& entry, uint64_t generation,
                        const Status& status) {
  // Runs on the store's writer thread, before its next group: a failed commit stops the rest
  // of this generation from applying.
  if (!status.ok()) failed_generation_ = generation;
  size_t events = 0, accepted = 0, duplicates = 0;
  const int64_t now = core::MonotonicMicros();
  // Everything under the lock: once the backlog is empty the feeder may return from Stop, and
  // the pipeline and its inbox may be gone.
  std::lock_guard lock(mutex_);
  --unfinished_;
  entry->applied = status.ok();
  if (!status.ok()) {
    failure_seen_ = true;
    // A request that failed says why first (ApplyOne); the ones refused after it only echo
    // that. Without one (the commit failed), the commit's error is the reason.
    if (last_error_.empty()) last_error_ = status.ToString();
  } else if (failing_since_us_ != 0) {
    spdlog::info("applying acknowledged requests again after {:.1f} s of failures",
                 static_cast<double>(core::MonotonicMicros() - failing_since_us_) / 1e6);
    failing_since_us_ = 0;
    last_error_.clear();
  }
  while (!in_store_.empty() && in_store_.front()->applied) {
    const Entry& e = *in_store_.front();
    applied_ = e.record.id;
    events += e.events;
    accepted += e.accepted;
    duplicates += e.duplicates;
    apply_lag_->Observe(static_cast<double>(now - e.accepted_us) / 1e6);
    in_store_.pop_front();
  }
  backlog_events_ -= events;
  accepted_->Add(accepted);
  duplicates_->Add(duplicates);
  inbox_.Release(applied_);
  // Handing more to the store waits until half of what it holds is done, so that the feeder
  // wakes once per many writes.
  const bool wake = ChoresDue() || (in_store_.size() <= kMaxInStore / 2 && !unsubmitted_.empty()) ||
                    (stopping_ && unsubmitted_.empty() && in_store_.empty());
  if (wake) cv_.notify_one();
}

void Pipeline::Stop(int timeout_ms) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      stopping_ = true;
      stop_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    }
    cv_.notify_all();
  }
  if (feeder_.joinable()) feeder_.join();
}

}  // namespace nudge::ingest
