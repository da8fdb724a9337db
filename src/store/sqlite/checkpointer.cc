#include "store/sqlite/checkpointer.h"

#include <pthread.h>

#include <chrono>
#include <utility>

namespace nudge::store::sqlite {

Result<std::unique_ptr<Checkpointer>> Checkpointer::Attach(const std::string& path, Db& writer) {
  NUDGE_TRY(writer.Exec("PRAGMA wal_autocheckpoint = 0"));
  const std::string limit =
      "PRAGMA journal_size_limit = " + std::to_string(kRestartFrames * kPageBytes);
  NUDGE_TRY(writer.Exec(limit.c_str()));
  NUDGE_ASSIGN_OR_RETURN(auto db, Db::Open(path, /*read_only=*/false));
  NUDGE_TRY(db->Exec("PRAGMA synchronous = FULL"));
  std::unique_ptr<Checkpointer> c(new Checkpointer(std::move(db)));
  sqlite3_wal_hook(writer.raw(), &Checkpointer::OnWal, c.get());
  return c;
}

Checkpointer::Checkpointer(std::unique_ptr<Db> db) : db_(std::move(db)) {
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

int Checkpointer::OnWal(void* self, sqlite3*, const char*, int frames) {
  if (frames >= kCheckpointFrames) {
    auto* c = static_cast<Checkpointer*>(self);
    std::lock_guard lock(c->mutex_);
    c->frames_ = frames;
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void Checkpointer::Loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    const int frames = std::exchange(frames_, 0);
    lock.unlock();
    const int mode =
        frames >= kRestartFrames ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE;
    sqlite3_wal_checkpoint_v2(db_->raw(), nullptr, mode, nullptr, nullptr);
    lock.lock();
  }
}

}  // namespace nudge::store::sqlite
