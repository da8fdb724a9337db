// Checkpointer: folds a WAL-mode database's log back into its file on a thread of its own, so
// that the connection that writes never pays for it (copying pages and the fsync of the file).
//
// Attach() turns off the writer's automatic checkpoints and installs a WAL hook that tells
// the thread how far the log has grown. PASSIVE checkpoints never block the writer or readers;
// when the log has run far ahead anyway (a long reader held it), a RESTART waits for the
// writer once so that the log starts over.
//
// Thread-safety: the hook runs on the writer's thread; everything else on the owner's.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.h"
#include "store/sqlite/db.h"

namespace nudge::store::sqlite {

// The thread checkpoints from this many frames in the log (16 MB of 4 KB pages) ...
inline constexpr int kCheckpointFrames = 4096;
// ... and from this many (256 MB) it waits for the writer once so that the log starts over.
inline constexpr int kRestartFrames = 65536;
inline constexpr int64_t kPageBytes = 4096;  // SQLite's default page size, which nudge keeps

class Checkpointer {
 public:
  // Opens the checkpointing connection to `path` and sets the writer's log up for it: no
  // automatic checkpoints, and a log file that keeps its size up to kRestartFrames pages
  // (reused rather than truncated and grown again under load).
  static Result<std::unique_ptr<Checkpointer>> Attach(const std::string& path, Db& writer);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Stops the thread and folds the whole log back, so that a clean stop leaves one
  // self-contained file. Call once the writer has stopped. Idempotent.
  void Stop();

 private:
  explicit Checkpointer(std::unique_ptr<Db> db);
  static int OnWal(void* self, sqlite3*, const char*, int frames);
  void Loop();

  std::unique_ptr<Db> db_;  // used by the thread only (and by Stop after it ended)
  std::mutex mutex_;
  std::condition_variable cv_;
  int frames_ = 0;     // GUARDED_BY(mutex_)
  bool stop_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace nudge::store::sqlite
