// The store's own limit, for bench/ingest_http.sh: how many event rows SQLite itself commits
// per second on this disk, with nothing of nudge around it (no HTTP, no parsing, no identity,
// no segments), the same rows and the same settings as nudge's writer (WAL,
// synchronous=FULL, 64 MB page cache, one transaction per group of GROUP rows).
//
//   sqlite_events DB SCHEMA_FILE BODY_FILE PREFILL GROUP MAX_ROWS MAX_SECONDS
//
// SCHEMA_FILE holds the CREATE statements of nudge's events table (and, or not, its indexes),
// as `sqlite3 nudge.db .schema events` prints them. BODY_FILE holds one stored event body,
// copied into every row. PREFILL rows are loaded first (one transaction, no sync), so that
// the indexes are as large as nudge's were. Then rows are committed GROUP at a time until
// MAX_ROWS or MAX_SECONDS. Each row: workspace 1, a contact among 200,000 (as the wrk scripts
// spread their userIds), a unique messageId made of a run prefix and a counter (as the wrk
// scripts make theirs: they sort in the order they arrive, unlike the random UUIDs of most
// SDKs), a timestamp that grows.
//
// As in nudge, checkpoints run on a second connection in their own thread (PASSIVE, every
// 50 ms; RESTART once the log passes 65,536 frames), so the committing thread never pays
// for them.
//
// Prints one JSON object: rows_per_s, written_bytes_per_row (bytes this process passed to
// write calls per row committed, checkpoints included: what nudge's ingest benchmark reports
// as write_calls), rows, seconds, group, prefill.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "sqlite_events: %s\n", what.c_str());
  std::exit(1);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK)
    Die(sql.substr(0, 60) + ": " + (err ? err : "?"));
}

std::string ReadFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die(std::string("cannot read ") + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Bytes this process has passed to write calls (/proc/self/io "wchar").
long long WrittenBytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  long long value = 0;
  while (in >> key >> value)
    if (key == "wchar:") return value;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) Die("usage: DB SCHEMA_FILE BODY_FILE PREFILL GROUP MAX_ROWS MAX_SECONDS");
  const std::string path = argv[1];
  const std::string schema = ReadFile(argv[2]);
  const std::string body = ReadFile(argv[3]);
  const long prefill = std::atol(argv[4]);
  const long group = std::max(1L, std::atol(argv[5]));
  const long max_rows = std::atol(argv[6]);
  const double max_seconds = std::atof(argv[7]);
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());

  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("cannot open " + path);
  sqlite3_busy_timeout(db, 10'000);  // a RESTART checkpoint waits for the writer, and back
  Exec(db, "PRAGMA journal_mode = WAL");
  Exec(db, "PRAGMA cache_size = -65536");
  Exec(db, "PRAGMA temp_store = MEMORY");
  Exec(db, schema);
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO events(ws, contact_id, message_id, type, name, timestamp, "
                         "received_at, body) VALUES(1, ?, ?, 'track', 'Page Viewed', ?, ?, ?)",
                         -1, &insert, nullptr) != SQLITE_OK)
    Die(std::string("prepare: ") + sqlite3_errmsg(db));

  std::mt19937_64 rng(42);
  long long seq = 0;
  const long long t0 = 1'760'000'000'000;
  auto add = [&] {
    char id[48];
    std::snprintf(id, sizeof id, "ref-1-%lld", seq);
    sqlite3_bind_int64(insert, 1, static_cast<sqlite3_int64>(rng() % 200'000 + 1));
    sqlite3_bind_text(insert, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert, 3, t0 + seq);
    sqlite3_bind_int64(insert, 4, t0 + seq);
    sqlite3_bind_text(insert, 5, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
    if (sqlite3_step(insert) != SQLITE_DONE) Die(std::string("insert: ") + sqlite3_errmsg(db));
    sqlite3_reset(insert);
    ++seq;
  };

  Exec(db, "PRAGMA synchronous = OFF");
  Exec(db, "BEGIN");
  for (long i = 0; i < prefill; ++i) add();
  Exec(db, "COMMIT");
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  Exec(db, "PRAGMA synchronous = FULL");
  Exec(db, "PRAGMA wal_autocheckpoint = 0");

  sqlite3* checkpointer = nullptr;
  if (sqlite3_open(path.c_str(), &checkpointer) != SQLITE_OK) Die("cannot open " + path);
  sqlite3_busy_timeout(checkpointer, 10'000);
  Exec(checkpointer, "PRAGMA synchronous = FULL");
  std::atomic<bool> stop{false};
  std::thread checkpoints([&] {
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      int frames = 0;
      sqlite3_wal_checkpoint_v2(checkpointer, nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, nullptr);
      if (frames >= 65536)
        sqlite3_wal_checkpoint_v2(checkpointer, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr,
                                  nullptr);
    }
  });

  const long long written_before = WrittenBytes();
  long rows = 0;
  const auto start = std::chrono::steady_clock::now();
  double seconds = 0;
  while (rows < max_rows && seconds < max_seconds) {
    Exec(db, "BEGIN");
    for (long g = 0; g < group && rows < max_rows; ++g, ++rows) add();
    Exec(db, "COMMIT");
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const long long written = WrittenBytes() - written_before;
  stop = true;
  checkpoints.join();
  sqlite3_close(checkpointer);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());
  std::printf(
      "{\"rows\":%ld,\"seconds\":%.3f,\"group\":%ld,\"prefill\":%ld,\"rows_per_s\":%.0f,"
      "\"written_bytes_per_row\":%.0f}\n",
      rows, seconds, group, prefill, rows / seconds,
      rows ? static_cast<double>(written) / rows : 0.0);
  return 0;
}
