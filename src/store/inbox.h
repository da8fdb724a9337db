// Inbox: the append-only log tracking requests are acknowledged on.
//
// A tracking request is durable once its body is in the inbox: one record (workspace,
// endpoint, arrival time, body) appended to a segment file by the inbox's own writer thread,
// in groups, each group made durable by one fdatasync before any of its requests is answered.
// Applying the request to the store (events, contacts, segments, journeys) happens after the
// acknowledgement, in inbox order; the store records how far it got (`kInboxAppliedMark`) in
// the same transaction, so that after a crash the records past that mark are applied again,
// and none twice.
//
// The inbox is a directory of its own (DATA/inbox/), so that its commits never wait on the
// store's: segment files named by their first record's id, each a header then records
// (u32 payload length, u32 CRC-32 of the payload, payload; little-endian). A record torn by a
// crash (never acknowledged: its fdatasync had not returned) is cut off at the next open. A
// segment is deleted once the store has applied every record in it; the one being written is
// closed after InboxOptions::segment_bytes or segment_seconds, so an applied request leaves the
// disk within seconds. The format is described in docs/ingest.md.
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

// The store mark (ReadTxn::GetMark) holding the id of the last inbox record applied.
inline constexpr const char* kInboxAppliedMark = "inbox_applied";

struct InboxRecord {
  int64_t id = 0;  // assigned by Append; increases by one with every record, never reused
  int64_t workspace = 0;
  std::string endpoint;  // "/v1/track", "/v1/batch", ... (ingest::EndpointPath)
  core::Millis received_at = 0;
  std::string body;  // the request body as parsed (gzip already undone) ...
  // ... or, when set, a zstd frame of it (ingest/body_codec.h); a flag of the record.
  bool compressed = false;
};

struct InboxOptions {
  std::string path;  // the inbox directory, created when missing; its parent must exist
  // An inbox of an earlier version (one SQLite file, inbox.db): when the file exists, its rows
  // past `applied` are moved into the log at open, then the file is removed.
  std::string legacy_path;
  // Ids start after this (the store's applied mark), so that an id is never given twice even
  // when every record has been deleted.
  int64_t applied = 0;
  int max_rows_per_commit = 1024;
  int64_t max_bytes_per_commit = 4 << 20;  // a group stops growing past this (one record at least)
  int64_t segment_bytes = 32 << 20;        // a segment is closed once it holds this much ...
  int segment_seconds = 10;                // ... or is this old, when it holds a record
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
  // Calls fn for every record with an id above `after`, in id order (on the calling thread).
  virtual Status Scan(int64_t after, const std::function<Status(const InboxRecord&)>& fn) = 0;
  // Records up to `id` are applied: their segments are deleted once every record in them is.
  virtual void Release(int64_t id) = 0;
  // Closes the segment being written at its next turn (within half a second), so that it is
  // deleted as soon as every record in it is applied rather than when it is old enough: an
  // erasure takes the request bodies of the erased contact off the disk with it.
  virtual void Roll() = 0;
  // Commits what was queued, then stops; later Appends fail with kUnavailable.
  virtual void Close() = 0;
};

}  // namespace nudge::store
