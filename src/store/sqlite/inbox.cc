// The SQLite inbox: one table without secondary indexes, WAL with synchronous=FULL, a writer
// thread that commits queued rows in groups, and a Checkpointer of its own.
#include "store/inbox.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/metrics.h"
#include "store/sqlite/checkpointer.h"
#include "store/sqlite/db.h"

namespace nudge::store {
namespace sqlite {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS inbox(
  id INTEGER PRIMARY KEY,
  ws INTEGER NOT NULL,
  endpoint TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  body TEXT NOT NULL);  -- as received (TEXT), or a zstd frame of it (BLOB)
)sql";

// Applied rows are deleted a few at a time, in the commits that append: each deletes up to
// twice as many as it appends, or up to kDeleteWithAppends when that is more, which keeps up
// with any rate and adds little to any one commit. Deleting 4,096 rows at once took 7-13 ms, and
// the requests arriving meanwhile waited for it (the p99 of the acknowledgement at half load).
constexpr int64_t kDeleteWithAppends = 64;
// With nothing to append, what is left is deleted in commits of this many rows, kIdlePause apart.
constexpr int64_t kDeleteWhenIdle = 1024;
constexpr auto kIdlePause = std::chrono::milliseconds(5);

struct PendingAppend {
  InboxRecord record;
  Inbox::AppendDone done;
};

class SqliteInbox final : public Inbox {
 public:
  SqliteInbox(InboxOptions options, std::unique_ptr<Db> db,
              std::unique_ptr<Checkpointer> checkpointer, int64_t next_id, int64_t deleted)
      : options_(std::move(options)),
        db_(std::move(db)),
        checkpointer_(std::move(checkpointer)),
        next_id_(next_id),
        deleted_(deleted),
        released_(options_.applied) {
    if (options_.metrics) {
      checkpointer_->AddMetrics(*options_.metrics, "nudge_inbox", "inbox");
      commit_latency_ = &options_.metrics->GetHistogram(
          "nudge_inbox_commit_seconds",
          "Time to commit one group of tracking requests to the inbox, fsync included.",
          {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "inbox");
      Loop();
    });
  }

  ~SqliteInbox() override { Close(); }

  void Append(InboxRecord record, AppendDone done) override {
    {
      std::lock_guard lock(mutex_);
      if (!closing_) {
        queue_.push_back({std::move(record), std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    done(Err(Status::Unavailable("the inbox is closed")), std::move(record));
  }

  Status Scan(int64_t after, const std::function<Status(const InboxRecord&)>& fn) override {
    // A connection of its own: the writer's belongs to its thread.
    NUDGE_ASSIGN_OR_RETURN(auto db, Db::Open(options_.path, /*read_only=*/true));
    NUDGE_ASSIGN_OR_RETURN(
        Stmt * stmt,
        db->Prepare("SELECT id, ws, endpoint, received_at, body FROM inbox WHERE id > ? "
                    "ORDER BY id"));
    StmtUse q(*stmt);
    q->Bind(1, after);
    for (;;) {
      NUDGE_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) return Status::Ok();
      const bool compressed = q->IsBlob(4);
      InboxRecord r{
          q->Int(0), q->Int(1), q->Text(2), q->Int(3), compressed ? q->Blob(4) : q->Text(4),
          compressed};
      NUDGE_TRY(fn(r));
    }
  }

  void Release(int64_t id) override {
    std::lock_guard lock(mutex_);
    if (id > released_) released_ = id;
  }

  void Close() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      cv_.notify_all();
    }
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
    checkpointer_->Stop();
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<PendingAppend> group;
      int64_t release = 0;
      bool closing = false;
      {
        std::unique_lock lock(mutex_);
        // Rows left to delete: come back soon to delete some even if nothing arrives.
        const auto pause = released_ > deleted_ ? kIdlePause : std::chrono::milliseconds(1000);
        cv_.wait_for(lock, pause, [this] { return closing_ || !queue_.empty(); });
        const size_t n = std::min(queue_.size(), static_cast<size_t>(options_.max_rows_per_commit));
        group.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        release = released_;
        closing = closing_ && queue_.empty();
      }
      int64_t upto = 0;
      if (release > deleted_) {
        const int64_t most =
            closing         ? release - deleted_
            : group.empty() ? kDeleteWhenIdle
                            : std::max(kDeleteWithAppends, 2 * static_cast<int64_t>(group.size()));
        upto = std::min(release, deleted_ + most);
      }
      if (!group.empty() || upto > 0) {
        checkpointer_->BeforeWrite();
        Commit(group, upto);
      }
      if (closing) return;
    }
  }

  // Writes the group and, when `release` is set, deletes the rows up to it, in one transaction.
  void Commit(std::vector<PendingAppend>& group, int64_t release) {
    const int64_t start = core::MonotonicMicros();
    const int64_t first = next_id_;
    Status s = db_->Run("BEGIN IMMEDIATE");
    if (s.ok()) {
      s = Insert(group);
      if (s.ok() && release > 0) s = Delete(release);
      if (s.ok()) s = db_->Run("COMMIT");
      if (!s.ok()) (void)db_->Run("ROLLBACK");
    }
    if (!s.ok()) {
      next_id_ = first;  // the ids were not written; give them again
      for (auto& p : group) p.done(Err(s), std::move(p.record));
      return;
    }
    if (release > 0) deleted_ = release;
    if (commit_latency_ && !group.empty())
      commit_latency_->Observe(static_cast<double>(core::MonotonicMicros() - start) / 1e6);
    for (size_t i = 0; i < group.size(); ++i) {
      group[i].record.id = first + static_cast<int64_t>(i);
      group[i].done(group[i].record.id, std::move(group[i].record));
    }
  }

  Status Insert(std::vector<PendingAppend>& group) {
    if (group.empty()) return Status::Ok();
    NUDGE_ASSIGN_OR_RETURN(
        Stmt * stmt,
        db_->Prepare(
            "INSERT INTO inbox(id, ws, endpoint, received_at, body) VALUES(?, ?, ?, ?, ?)"));
    for (auto& p : group) {
      StmtUse q(*stmt);
      const InboxRecord& r = p.record;
      q->Bind(1, next_id_++).Bind(2, r.workspace).Bind(3, r.endpoint).Bind(4, r.received_at);
      if (r.compressed) {
        q->BindBlob(5, r.body);
      } else {
        q->Bind(5, r.body);
      }
      NUDGE_TRY(q->Exec());
    }
    return Status::Ok();
  }

  Status Delete(int64_t upto) {
    NUDGE_ASSIGN_OR_RETURN(Stmt * stmt, db_->Prepare("DELETE FROM inbox WHERE id <= ?"));
    StmtUse q(*stmt);
    q->Bind(1, upto);
    return q->Exec();
  }

  InboxOptions options_;
  std::unique_ptr<Db> db_;  // used by the writer thread only
  std::unique_ptr<Checkpointer> checkpointer_;
  core::Histogram* commit_latency_ = nullptr;
  int64_t next_id_;  // writer thread only
  int64_t deleted_;  // writer thread only: no row up to it is left

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<PendingAppend> queue_;  // GUARDED_BY(mutex_)
  int64_t released_;                 // GUARDED_BY(mutex_)
  bool closing_ = false;             // GUARDED_BY(mutex_)

  std::mutex join_mutex_;
  std::thread thread_;
};

}  // namespace
}  // namespace sqlite

Result<std::unique_ptr<Inbox>> Inbox::Open(const InboxOptions& options) {
  NUDGE_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(options.path, /*read_only=*/false));
  NUDGE_TRY(db->Exec("PRAGMA journal_mode = WAL"));
  NUDGE_TRY(db->Exec("PRAGMA synchronous = FULL"));
  NUDGE_TRY(db->Exec(sqlite::kSchema));
  int64_t first = 0, last = 0;
  {
    NUDGE_ASSIGN_OR_RETURN(sqlite::Stmt * stmt,
                           db->Prepare("SELECT ifnull(min(id), 0), ifnull(max(id), 0) FROM inbox"));
    sqlite::StmtUse q(*stmt);
    NUDGE_ASSIGN_OR_RETURN(bool row, q->Step());
    if (row) {
      first = q->Int(0);
      last = q->Int(1);
    }
  }
  // Rows are deleted only once the store has committed them, and ids follow each other: an
  // oldest row past the store's mark + 1 means the store lost commits it had made.
  if (first > options.applied + 1)
    return Err(Status::Internal(
        "the ingest inbox starts at request " + std::to_string(first) +
        " but the store has applied only up to request " + std::to_string(options.applied) +
        ": the store lost writes it had committed (a missing nudge.db-wal, or a nudge.db older "
        "than inbox.db). Restore the data directory from a copy taken with the server stopped"));
  last = std::max(last, options.applied);
  NUDGE_ASSIGN_OR_RETURN(auto checkpointer, sqlite::Checkpointer::Attach(options.path, *db));
  // Deletes start below the oldest row, not at id 0.
  return std::unique_ptr<Inbox>(new sqlite::SqliteInbox(
      options, std::move(db), std::move(checkpointer), last + 1, first > 0 ? first - 1 : last));
}

}  // namespace nudge::store
