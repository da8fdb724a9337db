#include "store/sqlite/checkpointer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>

#include "core/clock.h"

namespace nudge::store::sqlite {

Result<std::unique_ptr<Checkpointer>> Checkpointer::Attach(const std::string& path, Db& writer,
                                                           CheckpointLimits limits) {
  NUDGE_TRY(writer.Exec("PRAGMA wal_autocheckpoint = 0"));
  const std::string limit =
      "PRAGMA journal_size_limit = " + std::to_string(limits.restart_frames * kPageBytes);
  NUDGE_TRY(writer.Exec(limit.c_str()));
  NUDGE_ASSIGN_OR_RETURN(auto db, Db::Open(path, /*read_only=*/false));
  NUDGE_TRY(db->Exec("PRAGMA synchronous = FULL"));
  std::unique_ptr<Checkpointer> c(new Checkpointer(std::move(db), writer, limits));
  sqlite3_wal_hook(writer.raw(), &Checkpointer::OnWal, c.get());
  return c;
}

Checkpointer::Checkpointer(std::unique_ptr<Db> db, Db& writer, CheckpointLimits limits)
    : db_(std::move(db)), writer_(writer), limits_(limits), next_restart_(limits.restart_frames) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "checkpoint");
    Loop();
  });
}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    cv_.notify_all();
  }
  if (!thread_.joinable()) return;
  thread_.join();
  sqlite3_wal_checkpoint_v2(db_->raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

void Checkpointer::AddMetrics(core::MetricsRegistry& metrics, const std::string& prefix,
                              const std::string& what) {
  restart_seconds_ = &metrics.GetHistogram(
      prefix + "_log_restart_seconds",
      "Time the " + what +
          "'s writer spent on each attempt to restart the database's log (WAL) between two "
          "transactions, waiting for the checkpoint in progress included; refused attempts "
          "are counted too.",
      {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  refused_ = &metrics.GetCounter(prefix + "_log_restarts_refused_total",
                                 "Attempts to restart the " + what +
                                     "'s log (WAL) put off because a reader still read from it.");
}

int Checkpointer::OnWal(void* self, sqlite3*, const char*, int frames) {
  auto* c = static_cast<Checkpointer*>(self);
  c->writer_frames_ = frames;
  if (frames >= c->limits_.checkpoint_frames) {
    std::lock_guard lock(c->mutex_);
    c->due_ = true;
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

bool Checkpointer::Truncate(Db& db, int wait_ms) {
  sqlite3_busy_timeout(db.raw(), wait_ms);
  const int rc =
      sqlite3_wal_checkpoint_v2(db.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  sqlite3_busy_timeout(db.raw(), kBusyTimeoutMs);
  if (rc != SQLITE_OK) return false;
  purge_owed_.store(false);
  backfilled_.store(0);
  return true;
}

bool Checkpointer::TruncateOnWriter(int wait_ms) {
  std::lock_guard lock(run_mutex_);  // the thread's checkpoint in progress ends first
  if (!Truncate(writer_, wait_ms)) return false;
  writer_frames_ = 0;
  next_restart_ = limits_.restart_frames;
  return true;
}

bool Checkpointer::PurgeLog() {
  if (TruncateOnWriter(limits_.force_wait_ms)) return true;
  purge_owed_.store(true);
  spdlog::warn(
      "the store's log (WAL) still holds erased data: a reader is on it; it is truncated once "
      "the reader is done");
  return false;
}

void Checkpointer::BeforeWrite() {
  // An owed purge, tried again at most once a second: an attempt that a reader refuses still
  // folds back what it can and syncs the database, which is the thread's work, not the
  // writer's. No waiting for the reader here.
  if (purge_owed_.load()) {
    const int64_t now = core::MonotonicMicros();
    if (now - last_purge_try_us_ >= 1'000'000) {
      last_purge_try_us_ = now;
      if (TruncateOnWriter(0)) return;
    }
  }
  if (writer_frames_ < next_restart_) return;
  const bool force = writer_frames_ >= limits_.force_restart_frames;
  // The thread is far behind: restarting now would make the writer fold back the rest itself.
  if (!force && writer_frames_ - backfilled_.load() > limits_.restart_lag) return;
  const int64_t start = core::MonotonicMicros();
  std::lock_guard lock(run_mutex_);  // the thread's checkpoint in progress ends first
  // No waiting for readers still on the log unless forced: the checkpoint then goes as far as
  // it can without them and says SQLITE_BUSY, and the writer tries again further on.
  sqlite3_busy_timeout(writer_.raw(), force ? limits_.force_wait_ms : 0);
  const int rc = sqlite3_wal_checkpoint_v2(writer_.raw(), nullptr, SQLITE_CHECKPOINT_RESTART,
                                           nullptr, nullptr);
  sqlite3_busy_timeout(writer_.raw(), kBusyTimeoutMs);
  if (restart_seconds_)
    restart_seconds_->Observe(static_cast<double>(core::MonotonicMicros() - start) / 1e6);
  if (rc == SQLITE_OK) {
    writer_frames_ = 0;
    backfilled_.store(0);
    next_restart_ = limits_.restart_frames;
  } else {
    if (refused_) refused_->Add();
    // A forced attempt waited: the next one comes only after as much log again.
    next_restart_ = writer_frames_ + (force ? limits_.restart_frames : limits_.checkpoint_frames);
  }
}

void Checkpointer::Loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_ || due_; });
    if (stop_) break;
    due_ = false;
    lock.unlock();
    {
      std::lock_guard run(run_mutex_);
      // An erasure's purge a reader put off, when the writer has no transaction to come: the
      // writer's lock is taken like a writer's, not waited for (a busy writer does the purge
      // itself). writer_frames_ is the writer's: it learns of the empty log from its next
      // commit.
      if (purge_owed_.load() && Truncate(*db_, 0)) {
        lock.lock();
        continue;
      }
      int done = 0;
      if (sqlite3_wal_checkpoint_v2(db_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                    &done) == SQLITE_OK)
        backfilled_.store(done);
    }
    lock.lock();
  }
}

}  // namespace nudge::store::sqlite
