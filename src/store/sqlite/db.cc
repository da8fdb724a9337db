#include "store/sqlite/db.h"

namespace nudge::store::sqlite {

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int primary = rc & 0xFF;
  // The storage failing (busy, full, an I/O error, a damaged or unwritable file, no memory)
  // says nothing against the write itself: kUnavailable, so that acknowledged requests wait
  // and are tried again rather than being dropped as requests that can never apply.
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL ||
      primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ||
      primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN || primary == SQLITE_PERM ||
      primary == SQLITE_NOMEM || primary == SQLITE_PROTOCOL)
    return Status(Code::kUnavailable, std::move(msg));
  return Status::Internal(std::move(msg));
}

void Stmt::NullUnbound() {
  if (params_ < 0) {
    params_ = sqlite3_bind_parameter_count(stmt_);
    all_ = params_ >= 64 ? ~uint64_t{0} : (uint64_t{1} << params_) - 1;
  }
  if (bound_ == all_ || params_ > 64) return;  // past 64: cleared at every Reset instead
  for (int i = 1; i <= params_; ++i)
    if (!((bound_ >> (i - 1)) & 1)) sqlite3_bind_null(stmt_, i);
  bound_ = all_;
}

Result<bool> Stmt::Step() {
  NullUnbound();
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Err(SqliteError(db_, rc, "sqlite step"));
}

Status Stmt::Exec() {
  for (;;) {
    auto r = Step();
    if (!r) return r.error();
    if (!*r) return Status::Ok();
  }
}

bool ConfigureLibrary() {
  // Memory statistics take a global mutex around every allocation and free (about 3.5% of the
  // store writer's time when they were left on); nudge does not read them. SQLite accepts
  // the setting only before its first connection, so it is made here, before every open.
  static const bool ok = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  return ok;
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, bool read_only) {
  ConfigureLibrary();
  sqlite3* raw = nullptr;
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = SqliteError(raw, rc, "cannot open " + path);
    sqlite3_close(raw);
    return Err(s);
  }
  // SQLite falls back to reading a file it may not write; a server would then start and fail
  // every write. Said at open instead.
  if (!read_only && sqlite3_db_readonly(raw, "main") == 1) {
    sqlite3_close(raw);
    return Err(
        Status::Unavailable("cannot open " + path + " for writing (read-only file or directory)"));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  return std::unique_ptr<Db>(new Db(raw));
}

Db::~Db() {
  cache_.clear();
  sqlite3_close(db_);
}

Status Db::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return SqliteError(nullptr, rc, msg);
  }
  return Status::Ok();
}

Result<Stmt*> Db::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return it->second.get();
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return Err(SqliteError(db_, rc, "sqlite prepare"));
  auto owned = std::make_unique<Stmt>(db_, stmt);
  Stmt* out = owned.get();
  cache_.emplace(sql, std::move(owned));
  return out;
}

Status Db::Run(const char* sql) {
  NUDGE_ASSIGN_OR_RETURN(Stmt * stmt, Prepare(sql));
  StmtUse use(*stmt);
  return stmt->Exec();
}

}  // namespace nudge::store::sqlite
