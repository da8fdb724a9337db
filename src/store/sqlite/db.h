// Db and Stmt: a thin RAII layer over one sqlite3 connection with a cache of prepared
// statements. Not thread-safe: one thread uses a Db at a time.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/result.h"

namespace nudge::store::sqlite {

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds are 1-based, in the order of the `?` in the SQL. A parameter left unbound in a use
  // is NULL.
  //
  // Text and blobs held by the caller in a std::string (an lvalue) are bound without a copy
  // (SQLITE_STATIC): the string must stay as it is until the statement has run, which it does
  // when it outlives the StmtUse or the Exec. Temporaries, views and C strings are copied.
  // Copying every bound string (and freeing the copies when the bindings were cleared) was a
  // tenth of the store writer's instructions for an event that starts a journey.
  Stmt& Bind(int i, int64_t v) {
    Mark(i);
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) { return Bytes(i, v, false, SQLITE_TRANSIENT); }
  Stmt& Bind(int i, const std::string& v) { return Bytes(i, v, false, SQLITE_STATIC); }
  Stmt& Bind(int i, std::string&& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const std::optional<std::string>& v) { return v ? Bind(i, *v) : BindNull(i); }
  Stmt& Bind(int i, std::optional<std::string>&& v) {
    return v ? Bind(i, std::string_view(*v)) : BindNull(i);
  }
  Stmt& BindNull(int i) {
    Mark(i);
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Stmt& BindBlob(int i, std::string_view v) { return Bytes(i, v, true, SQLITE_TRANSIENT); }
  Stmt& BindBlob(int i, const std::string& v) { return Bytes(i, v, true, SQLITE_STATIC); }
  Stmt& BindBlob(int i, std::string&& v) { return BindBlob(i, std::string_view(v)); }

  // Steps once: true while a row is available, false when done; errors as Status.
  Result<bool> Step();
  // Runs to completion, ignoring rows.
  Status Exec();
  // Ready for the next use. The bindings are not cleared (that freed and zeroed every one):
  // the next use binds its parameters, and those it leaves are bound to NULL before it runs.
  // (A statement not yet run, or with more than 64 parameters, has its bindings cleared.)
  void Reset() {
    sqlite3_reset(stmt_);
    if (params_ < 0 || params_ > 64) sqlite3_clear_bindings(stmt_);
    bound_ = 0;
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  bool IsBlob(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_BLOB; }
  std::string Blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::optional<std::string> OptText(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Text(col);
  }

 private:
  void Mark(int i) {
    if (i <= 64) bound_ |= uint64_t{1} << (i - 1);
  }
  // Text or a blob; `how` is SQLITE_STATIC (no copy) or SQLITE_TRANSIENT (a copy).
  Stmt& Bytes(int i, std::string_view v, bool blob, sqlite3_destructor_type how) {
    Mark(i);
    if (blob) {
      sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), how);
    } else {
      sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), how);
    }
    return *this;
  }
  // Binds NULL to every parameter this use left unbound (at its first step).
  void NullUnbound();

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  uint64_t bound_ = 0;  // the parameters (the first 64) bound since the last Reset
  uint64_t all_ = 0;    // every parameter's bit
  int params_ = -1;     // the statement's parameters, counted at its first step
};

// A statement in use: resets it when the scope ends.
class StmtUse {
 public:
  explicit StmtUse(Stmt& s) : s_(s) {}
  ~StmtUse() { s_.Reset(); }
  Stmt* operator->() { return &s_; }
  Stmt& operator*() { return s_; }

 private:
  Stmt& s_;
};

// How long a connection waits for a lock another connection holds before SQLITE_BUSY.
inline constexpr int kBusyTimeoutMs = 10000;

// Process-wide SQLite settings (memory statistics off). Called by Db::Open; a program that
// opens SQLite connections of its own calls it first. True when the settings took effect,
// false when some connection was opened before the first call.
bool ConfigureLibrary();

class Db {
 public:
  static Result<std::unique_ptr<Db>> Open(const std::string& path, bool read_only);
  ~Db();

  Status Exec(const char* sql);
  // The statement for this SQL text, prepared once per connection. `sql` must be a string
  // literal (its address is the cache key).
  Result<Stmt*> Prepare(const char* sql);
  // Runs one statement (a string literal, as for Prepare) through its cached prepared
  // statement: for transaction control, run once or more per transaction.
  Status Run(const char* sql);
  sqlite3* raw() { return db_; }
  int64_t Changes() const { return sqlite3_changes64(db_); }
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<const char*, std::unique_ptr<Stmt>> cache_;
};

Status SqliteError(sqlite3* db, int rc, std::string_view what);

}  // namespace nudge::store::sqlite
