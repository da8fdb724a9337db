// Inbox: the append-only log tracking requests are acknowledged on.
//
// A tracking request is durable once its body is in the inbox: one row (workspace, endpoint,
// arrival time, body), no index, committed in groups by the inbox's own writer thread with
// synchronous=FULL. Applying the request to the store (events, contacts, segments, journeys)
// happens after the acknowledgement, in inbox order; the store records how far it got
// (`kInboxAppliedMark`) in the same transaction, so that after a crash the rows past that
// mark are applied again, and no row twice.
//
// The inbox lives in its own SQLite file (DATA/inbox.db) so that its commits never wait on
// the store's, and rows that have been applied are deleted as the store confirms them.
//
// Thread-safety: Inbox is thread-safe. Append's callback runs on the inbox's writer thread,
// in id order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::core {
class MetricsRegistry;
}

namespace nudge::store {

// The store mark (ReadTxn::GetMark) holding the id of the last inbox row applied.
inline constexpr const char* kInboxAppliedMark = "inbox_applied";

struct InboxRecord {
  int64_t id = 0;  // assigned by Append; increases with every row, never reused
  int64_t workspace = 0;
  std::string endpoint;  // "/v1/track", "/v1/batch", ... (ingest::EndpointPath)
  core::Millis received_at = 0;
  std::string body;  // the request body as parsed (gzip already undone) ...
  // ... or, when set, a zstd frame of it (ingest/body_codec.h). Stored as a BLOB, where a
  // body kept as it came is TEXT, so that rows written either way read back as written.
  bool compressed = false;
};

struct InboxOptions {
  std::string path;  // the inbox file; its directory must exist
  // Ids start after this (the store's applied mark), so that an id is never given twice even
  // when every row has been deleted.
  int64_t applied = 0;
  int max_rows_per_commit = 1024;
  core::MetricsRegistry* metrics = nullptr;  // may be null
};

class Inbox {
 public:
  // Gets the record back (its id set when written), so that the caller need not keep a copy
  // of the body while it is written.
  using AppendDone = std::function<void(Result<int64_t> id, InboxRecord record)>;

  static Result<std::unique_ptr<Inbox>> Open(const InboxOptions& options);
  virtual ~Inbox() = default;

  // Queues the record (its id is ignored) for the next commit; `done` gets its id once the
  // commit is durable, or the error that kept it from being written.
  virtual void Append(InboxRecord record, AppendDone done) = 0;
  // Calls fn for every row with an id above `after`, in id order (on the calling thread).
  virtual Status Scan(int64_t after, const std::function<Status(const InboxRecord&)>& fn) = 0;
  // Rows up to `id` are applied: a later commit deletes them.
  virtual void Release(int64_t id) = 0;
  // Commits what was queued, then stops; later Appends fail with kUnavailable.
  virtual void Close() = 0;
};

}  // namespace nudge::store
