// Checkpointer: folds a WAL-mode database's log back into its file on a thread of its own, so
// that the connection that writes never pays for it (copying pages and the fsync of the file).
//
// Attach() turns off the writer's automatic checkpoints and installs a WAL hook that tells
// the thread how far the log has grown. The thread runs PASSIVE checkpoints, which never block
// the writer or readers. The hook is given all the frames the log holds, folded back or not, so
// once the log holds checkpoint_frames the thread runs its checkpoints back to back, each over
// the frames written during the one before. Spacing them out (one per checkpoint_frames new
// frames) took less of the thread's CPU under /v1/track, but at a million contacts the
// writer's restarts cost 52 ms instead of 15 on average (runs of the same day) and the tails
// of commits grew: larger fsyncs of the database, less often, delayed the log's. Not kept
// (bench/README.md).
//
// Under a steady stream of writes the log never starts over by itself: SQLite restarts it only
// when a write begins with every frame already folded back, and a new commit always lands while
// a checkpoint runs. So once the log holds restart_frames, the writer restarts it between two
// of its transactions (BeforeWrite): it waits for the checkpoint in progress to end, which
// leaves next to nothing to fold back, and runs a RESTART checkpoint on its own connection.
// That costs the writer 15-49 ms on average at a million contacts (runs on different days),
// most of it the wait for the checkpoint in progress (its fsync of the database). A RESTART run by
// the thread instead would wait for the writer's lock through the busy handler, which a busy writer
// hardly ever leaves free: the log grew meanwhile, and once it had the lock the checkpoint held the
// writer for as long as it took to fold back all of it (over a second at a million contacts).
//
// Thread-safety: the hook and BeforeWrite run on the writer's thread; the rest on the owner's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/metrics.h"
#include "core/result.h"
#include "store/sqlite/db.h"

namespace nudge::store::sqlite {

inline constexpr int64_t kPageBytes = 4096;  // SQLite's default page size, which nudge keeps

// When the log is checkpointed and restarted, in frames (pages) of the log.
struct CheckpointLimits {
  // The thread checkpoints from this many frames in the log (16 MB of 4 KB pages) ...
  int checkpoint_frames = 4096;
  // ... and from this many (256 MB) the writer restarts the log ...
  int restart_frames = 65536;
  // ... once the thread's checkpoints are no more than this many frames behind (the writer
  // folds those back itself) ...
  int restart_lag = 16384;
  // ... and waits for readers still reading the log only from this many (1 GB), for at most
  // force_wait_ms. Below it a reader in the way makes the writer try again checkpoint_frames
  // later; past it, restart_frames later.
  int force_restart_frames = 262144;
  int force_wait_ms = 1000;
};

class Checkpointer {
 public:
  // Opens the checkpointing connection to `path` and sets the writer's log up for it: no
  // automatic checkpoints, and a log file that keeps its size up to restart_frames pages
  // (reused rather than truncated and grown again under load). `writer` must outlive it.
  static Result<std::unique_ptr<Checkpointer>> Attach(const std::string& path, Db& writer,
                                                      CheckpointLimits limits = {});
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // The writer's thread calls this before each transaction it begins (no transaction open):
  // restarts the log when it is due, as the header says.
  void BeforeWrite();

  // Reports the writer's time on each attempt to restart the log (PREFIX_log_restart_seconds;
  // its count is the attempts) and the attempts a reader put off
  // (PREFIX_log_restarts_refused_total); `what` names the database in their help. Call before
  // the writer's thread starts.
  void AddMetrics(core::MetricsRegistry& metrics, const std::string& prefix,
                  const std::string& what);

  // Erasure: folds the whole log back into the database and truncates the log file to
  // nothing, so that no older copy of an erased row's pages is left in it (the database's own
  // pages are overwritten with zeros by secure_delete). The writer's thread calls it between
  // two of its transactions; it waits for the thread's checkpoint in progress and for readers
  // still on the log, up to force_wait_ms. Returns false when a reader kept it from truncating:
  // the purge is then owed, and done by the thread within a second of the reader leaving, or
  // by the writer's BeforeWrite (at most once a second) while it keeps writing. PurgeOwed()
  // says whether one is.
  bool PurgeLog();
  bool PurgeOwed() const { return purge_owed_.load(); }

  // Stops the thread and folds the whole log back, so that a clean stop leaves one
  // self-contained file. Call once the writer has stopped. Idempotent.
  void Stop();

 private:
  Checkpointer(std::unique_ptr<Db> db, Db& writer, CheckpointLimits limits);
  static int OnWal(void* self, sqlite3*, const char*, int frames);
  void Loop();
  // A TRUNCATE checkpoint on `db` (the writer's connection or the thread's), waiting up to
  // wait_ms for readers; with run_mutex_ held. True when the log file is empty after it.
  bool Truncate(Db& db, int wait_ms);
  // Truncate on the writer's connection, from the writer's thread (taking run_mutex_), and the
  // writer's count of the log's frames set back with it.
  bool TruncateOnWriter(int wait_ms);

  std::unique_ptr<Db> db_;  // used by the thread only (and by Stop after it ended)
  Db& writer_;
  const CheckpointLimits limits_;
  int writer_frames_ = 0;                // frames in the log after the last commit; writer only
  int next_restart_;                     // writer only
  std::atomic<int> backfilled_{0};       // frames the thread's last checkpoint had folded back
  std::atomic<bool> purge_owed_{false};  // an erasure's purge a reader put off
  int64_t last_purge_try_us_ = 0;        // writer only: its last try at an owed purge
  core::Histogram* restart_seconds_ = nullptr;  // set by AddMetrics, or null
  core::Counter* refused_ = nullptr;            // ditto
  std::mutex run_mutex_;  // held through each checkpoint, the thread's and the writer's
  std::mutex mutex_;
  std::condition_variable cv_;
  bool due_ = false;   // GUARDED_BY(mutex_): the log has grown past checkpoint_frames
  bool stop_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace nudge::store::sqlite
