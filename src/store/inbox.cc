// The inbox as a log of its own: segment files written by one thread, a group of requests at
// a time, each group made durable by one fdatasync before its requests are answered.
//
// Why not a SQLite table (what the inbox was): a commit there wrote every page a group touched
// into the WAL one pwrite at a time, then the WAL index, and the log needed checkpoints of its
// own; the inbox thread spent ~0.5 ms of CPU per commit of ~40 requests, and on 2 cores it
// waited for a CPU mid-commit more than it waited for the disk. Here a commit is one pwrite
// and one fdatasync.
#include "store/inbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "core/metrics.h"
#include "store/sqlite/db.h"

namespace nudge::store {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the inbox's format is little-endian, written as the machine holds it");

constexpr char kMagic[8] = {'N', 'U', 'D', 'G', 'E', 'I', 'B', '1'};
constexpr size_t kFileHeader = sizeof(kMagic);
constexpr size_t kRecordHeader = 8;                  // u32 payload length, u32 CRC-32 of it
constexpr size_t kPayloadFixed = 8 + 8 + 8 + 1 + 1;  // id, ws, received_at, flags, endpoint size
// Far above any request (limits.max_batch_bytes is at most 64 MiB); a length past it is damage.
constexpr uint32_t kMaxPayload = 1u << 30;
constexpr uint8_t kFlagCompressed = 1;
// The last record of a group (one pwrite, one fdatasync). A group is written only once the one
// before it is durable, so a whole record of a later group after a bad spot shows the bad spot
// was acknowledged: damage, not a group torn by a crash.
constexpr uint8_t kFlagGroupEnd = 2;
constexpr const char* kSuffix = ".log";

std::string ErrnoText(int e) { return std::strerror(e); }

Status IoError(const std::string& what, const std::string& path, int e) {
  return Status::Unavailable("cannot " + what + " " + path + ": " + ErrnoText(e));
}

// "00000000000000000042.log": sorted by name is sorted by first id.
std::string SegmentName(int64_t first) {
  char name[32];
  std::snprintf(name, sizeof name, "%020lld%s", static_cast<long long>(first), kSuffix);
  return name;
}

std::optional<int64_t> SegmentFirst(const std::string& name) {
  if (name.size() != 20 + std::strlen(kSuffix) || !name.ends_with(kSuffix)) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    const int digit = name[i] - '0';
    if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) return std::nullopt;  // no id
    v = v * 10 + digit;
  }
  return v;
}

struct SegmentFile {
  int64_t first = 0;
  std::string path;
};

// The id past the last record that counts in files[i]: an older segment ends where the next
// begins. Records of it from there on belong to groups that failed (a full disk, a failed
// fdatasync), were answered so, and could not be cut off then; the next segment gives their
// ids again.
int64_t SegmentEnd(const std::vector<SegmentFile>& files, size_t i) {
  return i + 1 < files.size() ? files[i + 1].first : std::numeric_limits<int64_t>::max();
}

// The segment files of `dir`, oldest first.
Result<std::vector<SegmentFile>> ListSegments(const std::string& dir) {
  std::vector<SegmentFile> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return Err(IoError("read the directory", dir, errno));
  while (dirent* e = readdir(d)) {
    if (auto first = SegmentFirst(e->d_name)) out.push_back({*first, dir + "/" + e->d_name});
  }
  closedir(d);
  std::sort(out.begin(), out.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.first < b.first; });
  return out;
}

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutI64(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
int64_t GetI64(const char* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t Crc(const char* data, size_t size) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (size > 0) {  // zlib takes a uInt
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(data), n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(c);
}

void Encode(std::string& out, int64_t id, const InboxRecord& r, bool group_end) {
  const size_t endpoint = std::min<size_t>(r.endpoint.size(), 255);
  const size_t payload = kPayloadFixed + endpoint + r.body.size();
  const size_t at = out.size();
  PutU32(out, static_cast<uint32_t>(payload));
  PutU32(out, 0);  // the CRC, below
  PutI64(out, id);
  PutI64(out, r.workspace);
  PutI64(out, r.received_at);
  out.push_back(
      static_cast<char>((r.compressed ? kFlagCompressed : 0) | (group_end ? kFlagGroupEnd : 0)));
  out.push_back(static_cast<char>(endpoint));
  out.append(r.endpoint, 0, endpoint);
  out.append(r.body);
  const uint32_t crc = Crc(out.data() + at + kRecordHeader, payload);
  std::memcpy(out.data() + at + 4, &crc, 4);
}

// Reads the record at `pos` into `out` and moves `pos` past it. nullopt at the end of the data;
// otherwise the record, or why the bytes at `pos` are no record (a torn or damaged one).
struct Decoded {
  bool ok = false;
  std::string why;
  bool group_end = false;
};
std::optional<Decoded> Decode(std::string_view data, size_t& pos, InboxRecord& out) {
  if (pos == data.size()) return std::nullopt;
  const size_t left = data.size() - pos;
  if (left < kRecordHeader) return Decoded{false, "a record header cut short"};
  const char* p = data.data() + pos;
  const uint32_t payload = GetU32(p);
  if (payload < kPayloadFixed || payload > kMaxPayload)
    return Decoded{false, "a record length of " + std::to_string(payload)};
  if (left - kRecordHeader < payload) return Decoded{false, "a record cut short"};
  const char* q = p + kRecordHeader;
  if (Crc(q, payload) != GetU32(p + 4)) return Decoded{false, "a record whose checksum differs"};
  const uint8_t flags = static_cast<uint8_t>(q[24]);
  const size_t endpoint = static_cast<uint8_t>(q[25]);
  if (kPayloadFixed + endpoint > payload) return Decoded{false, "a record's endpoint too long"};
  out.id = GetI64(q);
  out.workspace = GetI64(q + 8);
  out.received_at = GetI64(q + 16);
  out.compressed = (flags & kFlagCompressed) != 0;
  const bool group_end = (flags & kFlagGroupEnd) != 0;
  out.endpoint.assign(q + kPayloadFixed, endpoint);
  out.body.assign(q + kPayloadFixed + endpoint, payload - kPayloadFixed - endpoint);
  pos += kRecordHeader + payload;
  return Decoded{true, {}, group_end};
}

// Whether whole records of a group after the one holding the bad spot at `pos` follow it
// (records with ids from `expect` on, found by trying every byte). Then the bad spot's group
// was durable before that one was written: it was acknowledged, and the spot is damage.
bool LaterGroupFollows(std::string_view data, size_t pos, int64_t expect) {
  InboxRecord r;
  int64_t group_end = -1;  // the id of a group's last record seen after the spot
  for (size_t at = pos + 1; at + kRecordHeader + kPayloadFixed <= data.size(); ++at) {
    const uint32_t payload = GetU32(data.data() + at);
    if (payload < kPayloadFixed || payload > data.size() - at - kRecordHeader) continue;
    const int64_t id = GetI64(data.data() + at + kRecordHeader);
    if (id < expect || id > expect + (int64_t{1} << 32)) continue;  // cheap, before the CRC
    size_t next = at;
    auto d = Decode(data, next, r);
    if (!d || !d->ok) continue;
    if (group_end >= 0 && r.id > group_end) return true;
    if (d->group_end) group_end = r.id;
    at = next - 1;
  }
  return false;
}

// A segment whose records were acknowledged is not what it should be.
Status Damaged(const std::string& path, size_t at, const std::string& why) {
  return Status::Internal("the inbox file " + path + " is damaged at byte " + std::to_string(at) +
                          ": " + why +
                          ". Requests in it were acknowledged; restore the data directory from a "
                          "copy taken with the server stopped");
}

Result<std::string> ReadWhole(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(IoError("open", path, errno));
  std::string data;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      return Err(IoError("read", path, e));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open the directory", dir, errno);
  const int rc = fsync(fd);
  const int e = errno;
  close(fd);
  return rc == 0 ? Status::Ok() : IoError("sync the directory", dir, e);
}

Status WriteAt(int fd, const std::string& path, const char* data, size_t size, int64_t offset) {
  while (size > 0) {
    const ssize_t n = pwrite(fd, data, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("write", path, errno);
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return Status::Ok();
}

struct PendingAppend {
  InboxRecord record;
  Inbox::AppendDone done;
};

// What Open found in the directory: the segments left, and the ids they hold.
struct Recovered {
  std::deque<SegmentFile> segments;  // oldest first; none is written to again
  int64_t first = 0;                 // the oldest record's id, 0 when there is none
  int64_t last = 0;                  // the newest record's id, 0 when there is none
};

class LogInbox final : public Inbox {
 public:
  LogInbox(InboxOptions options, Recovered recovered)
      : options_(std::move(options)),
        segments_(std::move(recovered.segments)),
        next_id_(std::max(recovered.last, options_.applied) + 1),
        released_(options_.applied) {
    if (options_.metrics) {
      commit_latency_ = &options_.metrics->GetHistogram(
          "nudge_inbox_commit_seconds",
          "Time to commit one group of tracking requests to the inbox, fsync included.",
          {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});
    }
  }

  ~LogInbox() override {
    Close();
    if (fd_ >= 0) close(fd_);
  }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "inbox");
      Loop();
    });
  }

  // Whether a group of `n` records holding `bytes` of bodies takes no more.
  bool GroupFull(size_t n, int64_t bytes) const {
    return n >= static_cast<size_t>(options_.max_rows_per_commit) ||
           bytes >= options_.max_bytes_per_commit;
  }

  // Writes records of an earlier inbox before the thread starts; they keep their order.
  Status WriteNow(std::vector<InboxRecord>& records) {
    std::vector<PendingAppend> group;
    Status status = Status::Ok();
    int64_t bytes = 0;
    for (auto& r : records) {
      bytes += static_cast<int64_t>(r.body.size());
      group.push_back({std::move(r), [&status](Result<int64_t> id, InboxRecord) {
                         if (!id && status.ok()) status = id.error();
                       }});
      if (GroupFull(group.size(), bytes)) {
        Commit(group);
        group.clear();
        bytes = 0;
        // Stop at a failure: the next group would take the failed one's ids.
        if (!status.ok()) return status;
      }
    }
    if (!group.empty()) Commit(group);
    return status;
  }

  void Append(InboxRecord record, AppendDone done) override {
    if (kPayloadFixed + record.endpoint.size() + record.body.size() > kMaxPayload)
      return done(Err(Status(Code::kTooLarge, "the request is too large for the inbox", "body")),
                  std::move(record));
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
    NUDGE_ASSIGN_OR_RETURN(auto files, ListSegments(options_.path));
    InboxRecord r;
    for (size_t i = 0; i < files.size(); ++i) {
      if (i + 1 < files.size() && files[i + 1].first - 1 <= after) continue;
      auto data = ReadWhole(files[i].path);
      if (!data) {
        if (access(files[i].path.c_str(), F_OK) != 0) continue;  // applied and deleted meanwhile
        return data.error();
      }
      size_t pos = kFileHeader;
      if (data->size() < kFileHeader) continue;  // being created
      const int64_t end = SegmentEnd(files, i);
      int64_t expect = files[i].first;
      while (expect < end) {
        auto d = Decode(*data, pos, r);
        if (!d) break;
        // The newest segment may end in a group being written.
        if (!d->ok) {
          if (i + 1 == files.size()) break;
          return Damaged(files[i].path, pos, d->why);
        }
        if (r.id > after) NUDGE_TRY(fn(r));
        expect = r.id + 1;
      }
    }
    return Status::Ok();
  }

  void Release(int64_t id) override {
    std::lock_guard lock(mutex_);
    if (id > released_) released_ = id;
  }

  void Roll() override {
    std::lock_guard lock(mutex_);
    roll_ = true;
    cv_.notify_all();
  }

  void Close() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      cv_.notify_all();
    }
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<PendingAppend> group;
      int64_t release = 0;
      bool closing = false;
      {
        std::unique_lock lock(mutex_);
        // Come back now and then to close a segment that is old enough, and delete it once
        // applied, even when nothing arrives.
        cv_.wait_for(lock, std::chrono::milliseconds(500),
                     [this] { return closing_ || roll_ || !queue_.empty(); });
        if (std::exchange(roll_, false) && fd_ >= 0) rolled_ = true;
        int64_t bytes = 0;
        while (!queue_.empty() && (group.empty() || !GroupFull(group.size(), bytes))) {
          bytes += static_cast<int64_t>(queue_.front().record.body.size());
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        release = released_;
        closing = closing_ && queue_.empty();
      }
      if (!group.empty()) Commit(group);
      Trim(release, group.empty(), closing);
      if (closing) {
        if (fd_ >= 0) close(fd_);
        fd_ = -1;
        return;
      }
    }
  }

  bool ActiveIsOld() const {
    return rolled_ ||
           core::MonotonicMicros() - opened_us_ >= int64_t{options_.segment_seconds} * 1'000'000;
  }

  // Closes the segment being written (its records are durable already) and starts another,
  // named by the next id, durable as a file before any record in it is acknowledged.
  Status StartSegment() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    const std::string path = options_.path + "/" + SegmentName(next_id_);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return IoError("create", path, errno);
    Status s = WriteAt(fd, path, kMagic, kFileHeader, 0);
    if (s.ok() && fdatasync(fd) != 0) s = IoError("sync", path, errno);
    if (s.ok()) s = SyncDirectory(options_.path);
    if (!s.ok()) {
      close(fd);
      unlink(path.c_str());
      return s;
    }
    fd_ = fd;
    size_ = kFileHeader;
    records_ = 0;
    opened_us_ = core::MonotonicMicros();
    rolled_ = false;
    // A segment started at this id and left without a record (its group failed) is this file.
    if (!segments_.empty() && segments_.back().first == next_id_) segments_.pop_back();
    segments_.push_back({next_id_, path});
    return Status::Ok();
  }

  void Commit(std::vector<PendingAppend>& group) {
    const int64_t start = core::MonotonicMicros();
    const int64_t first = next_id_;
    Status s = Status::Ok();
    if (fd_ < 0 || (records_ > 0 && (size_ >= options_.segment_bytes || ActiveIsOld())))
      s = StartSegment();
    if (s.ok()) {
      buffer_.clear();
      for (size_t i = 0; i < group.size(); ++i)
        Encode(buffer_, next_id_++, group[i].record, i + 1 == group.size());
      const std::string& path = segments_.back().path;
      s = WriteAt(fd_, path, buffer_.data(), buffer_.size(), size_);
      if (s.ok() && fdatasync(fd_) != 0) s = IoError("sync", path, errno);
      if (!s.ok()) {
        // Nothing of the group is acknowledged: cut it off, so that the next group follows
        // the last whole one. A failed fdatasync may have lost pages written before it, so
        // the next group goes to a segment of its own.
        // Synced too (best effort): should the whole group reach the disk after all, the
        // next start cuts it off, as the next segment gives its ids again (Recover).
        if (ftruncate(fd_, size_) == 0) (void)fdatasync(fd_);
        close(fd_);
        fd_ = -1;
      }
    }
    if (!s.ok()) {
      next_id_ = first;  // the ids were not written; give them again
      spdlog::error("the inbox could not commit {} requests: {}", group.size(), s.ToString());
      for (auto& p : group) p.done(Err(s), std::move(p.record));
      return;
    }
    size_ += static_cast<int64_t>(buffer_.size());
    records_ += static_cast<int64_t>(group.size());
    if (buffer_.capacity() > (size_t{8} << 20)) std::string().swap(buffer_);
    if (commit_latency_)
      commit_latency_->Observe(static_cast<double>(core::MonotonicMicros() - start) / 1e6);
    for (size_t i = 0; i < group.size(); ++i) {
      group[i].record.id = first + static_cast<int64_t>(i);
      group[i].done(group[i].record.id, std::move(group[i].record));
    }
  }

  // Deletes the segments whose every record is applied. The one being written goes too once
  // applied when it is old enough (or at close), so that a request's body leaves the disk
  // soon after it was applied even when few arrive; the next append starts another.
  void Trim(int64_t release, bool idle, bool closing) {
    const bool writing = fd_ >= 0;
    const size_t closed = segments_.size() - (writing ? 1 : 0);
    size_t gone = 0;
    for (; gone < closed; ++gone) {
      const int64_t last =
          gone + 1 < segments_.size() ? segments_[gone + 1].first - 1 : next_id_ - 1;
      if (last > release) break;
      Remove(segments_[gone].path);
    }
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(gone));
    if (writing && segments_.size() == 1 && records_ > 0 && next_id_ - 1 <= release &&
        (closing || (idle && ActiveIsOld()))) {
      close(fd_);
      fd_ = -1;
      Remove(segments_.back().path);
      segments_.clear();
    }
  }

  static void Remove(const std::string& path) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT)
      spdlog::warn("cannot delete the applied inbox segment {}: {}", path, ErrnoText(errno));
  }

  InboxOptions options_;
  core::Histogram* commit_latency_ = nullptr;

  // The writer thread's (Open's before it starts):
  std::deque<SegmentFile> segments_;  // oldest first; the last is written when fd_ >= 0
  int fd_ = -1;
  int64_t size_ = 0;     // bytes of whole records (and the header) in the segment written
  int64_t records_ = 0;  // records in it
  int64_t opened_us_ = 0;
  bool rolled_ = false;  // Roll() was called since the segment was started
  int64_t next_id_;
  std::string buffer_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<PendingAppend> queue_;  // GUARDED_BY(mutex_)
  int64_t released_;                 // GUARDED_BY(mutex_)
  bool closing_ = false;             // GUARDED_BY(mutex_)
  bool roll_ = false;                // GUARDED_BY(mutex_)

  std::mutex join_mutex_;
  std::thread thread_;
};

// Cuts the segment at `path` to its first `size` bytes, durably.
Status CutAt(const std::string& path, size_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", path, errno);
  Status s;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    s = IoError("truncate", path, errno);
  } else if (fdatasync(fd) != 0) {
    s = IoError("sync", path, errno);
  }
  close(fd);
  return s;
}

// Reads every segment, cuts off a torn group at the end of the newest one, and deletes the
// segments the store applied whole. A damaged record anywhere else is an error: records
// before the newest segment's end were acknowledged.
Result<Recovered> Recover(const InboxOptions& options) {
  NUDGE_ASSIGN_OR_RETURN(auto files, ListSegments(options.path));
  Recovered out;
  InboxRecord r;
  for (size_t i = 0; i < files.size(); ++i) {
    const SegmentFile& f = files[i];
    const bool newest = i + 1 == files.size();
    if (!newest && files[i + 1].first - 1 <= options.applied) {
      unlink(f.path.c_str());  // applied whole: its deletion had not happened yet
      continue;
    }
    NUDGE_ASSIGN_OR_RETURN(std::string data, ReadWhole(f.path));
    auto damaged = [&](size_t at, const std::string& why) { return Damaged(f.path, at, why); };
    if (newest && data.size() <= kFileHeader) {
      unlink(f.path.c_str());  // created (its header durable or not) and never written to
      break;
    }
    if (data.size() < kFileHeader || std::memcmp(data.data(), kMagic, kFileHeader) != 0)
      return Err(damaged(0, "not an inbox segment (it does not start with NUDGEIB1)"));
    // Ids follow each other across segments: the records below start at the file's name.
    if (out.last != 0 && f.first != out.last + 1)
      return Err(damaged(kFileHeader, "it starts at request " + std::to_string(f.first) +
                                          " after request " + std::to_string(out.last)));
    size_t pos = kFileHeader;
    int64_t expect = f.first;
    const int64_t end = SegmentEnd(files, i);
    for (size_t at = pos; expect < end; at = pos) {
      auto d = Decode(data, pos, r);
      if (!d) break;
      // A whole record with another id was never written here by a torn write: the file is
      // misnamed or its records were changed.
      if (d->ok && r.id != expect)
        return Err(damaged(at, "record " + std::to_string(r.id) + " where " +
                                   std::to_string(expect) + " was due"));
      if (!d->ok) {
        // A group is cut off the newest segment: it was being written at a crash, unless a
        // later group follows it. (One left in an older segment is past its end, cut below.)
        if (!newest || LaterGroupFollows(data, pos, expect)) return Err(damaged(pos, d->why));
        spdlog::warn(
            "the inbox file {} ends in a group that was never acknowledged ({} bytes from "
            "byte {}, {}): it was being written at a crash, or failed to; its requests are "
            "dropped",
            f.path, data.size() - pos, pos, d->why);
        NUDGE_TRY(CutAt(f.path, pos));
        break;
      }
      if (out.first == 0) out.first = r.id;
      out.last = r.id;
      ++expect;
    }
    if (expect == end && pos < data.size()) {
      spdlog::warn(
          "the inbox file {} ends in requests that were never acknowledged ({} bytes from "
          "byte {}; {} gives their ids again): they are dropped",
          f.path, data.size() - pos, pos, files[i + 1].path);
      NUDGE_TRY(CutAt(f.path, pos));
    }
    if (newest && expect == f.first) {
      unlink(f.path.c_str());  // no record in it
      break;
    }
    out.segments.push_back(f);
  }
  return out;
}

// The rows an earlier version's inbox (one SQLite table) holds past `after`, in id order.
Result<std::vector<InboxRecord>> ReadLegacyRows(const std::string& path, int64_t after) {
  std::vector<InboxRecord> rows;
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && st.st_size == 0) return rows;  // created, never written
  NUDGE_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(path, /*read_only=*/false));
  {
    NUDGE_ASSIGN_OR_RETURN(
        sqlite::Stmt * has,
        db->Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'"));
    sqlite::StmtUse q(*has);
    NUDGE_ASSIGN_OR_RETURN(bool table, q->Step());
    if (!table) return rows;  // the table was never made: nothing was written
  }
  NUDGE_ASSIGN_OR_RETURN(
      sqlite::Stmt * stmt,
      db->Prepare(
          "SELECT id, ws, endpoint, received_at, body FROM inbox WHERE id > ? ORDER BY id"));
  sqlite::StmtUse q(*stmt);
  q->Bind(1, after);
  for (;;) {
    NUDGE_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    const bool compressed = q->IsBlob(4);
    rows.push_back(InboxRecord{q->Int(0), q->Int(1), q->Text(2), q->Int(3),
                               compressed ? q->Blob(4) : q->Text(4), compressed});
  }
  return rows;
}

Result<std::vector<InboxRecord>> LegacyRows(const std::string& path, int64_t after) {
  auto rows = ReadLegacyRows(path, after);
  if (!rows)
    return Err(Status::Internal("cannot read the inbox of an earlier version " + path + ": " +
                                rows.error().ToString()));
  return rows;
}

Status RemoveLegacy(const std::string& path) {
  for (const char* suffix : {"-wal", "-shm", ""}) {
    const std::string p = path + suffix;
    if (unlink(p.c_str()) != 0 && errno != ENOENT) return IoError("delete", p, errno);
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

}  // namespace

Result<std::unique_ptr<Inbox>> Inbox::Open(const InboxOptions& options) {
  const std::filesystem::path dir(options.path);
  if (mkdir(options.path.c_str(), 0700) == 0) {
    NUDGE_TRY(SyncDirectory(dir.parent_path().empty() ? "." : dir.parent_path().string()));
  } else if (errno != EEXIST) {
    return Err(IoError("create the directory", options.path, errno));
  }
  struct stat st {};
  if (stat(options.path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return Err(Status::Unavailable("the inbox " + options.path +
                                   " is not a directory; move that file away"));
  if (access(options.path.c_str(), W_OK | X_OK) != 0)
    return Err(IoError("write in", options.path, errno));
  NUDGE_ASSIGN_OR_RETURN(Recovered recovered, Recover(options));

  // Requests an earlier version acknowledged and did not apply: moved here, oldest first.
  std::vector<InboxRecord> legacy;
  const bool has_legacy =
      !options.legacy_path.empty() && access(options.legacy_path.c_str(), F_OK) == 0;
  if (has_legacy) {
    const int64_t after = std::max(options.applied, recovered.last);
    NUDGE_ASSIGN_OR_RETURN(legacy, LegacyRows(options.legacy_path, after));
    if (!legacy.empty() && recovered.last == 0) recovered.first = legacy.front().id;
    for (size_t i = 1; i < legacy.size(); ++i) {
      if (legacy[i].id != legacy[i - 1].id + 1)
        return Err(Status::Internal("the inbox " + options.legacy_path + " lacks request " +
                                    std::to_string(legacy[i - 1].id + 1)));
    }
    if (!legacy.empty() && recovered.last != 0 &&
        legacy.front().id != std::max(recovered.last, options.applied) + 1)
      return Err(Status::Internal("the inbox " + options.legacy_path + " continues at request " +
                                  std::to_string(legacy.front().id) + " after request " +
                                  std::to_string(std::max(recovered.last, options.applied))));
  }
  // Records are deleted only once the store has committed them, and ids follow each other: an
  // oldest record past the store's mark + 1 means the store lost commits it had made.
  if (recovered.first > options.applied + 1)
    return Err(Status::Internal(
        "the ingest inbox starts at request " + std::to_string(recovered.first) +
        " but the store has applied only up to request " + std::to_string(options.applied) +
        ": the store lost writes it had committed (a missing nudge.db-wal, or a nudge.db older "
        "than the inbox). Restore the data directory from a copy taken with the server stopped"));

  const int64_t last_legacy = legacy.empty() ? 0 : legacy.back().id;
  auto inbox = std::make_unique<LogInbox>(options, std::move(recovered));
  if (!legacy.empty()) {
    const size_t n = legacy.size();
    // The ids follow the log's (or the store's mark) as the rows' did.
    NUDGE_TRY(inbox->WriteNow(legacy));
    spdlog::info("moved {} acknowledged requests (up to {}) from {} into the inbox {}", n,
                 last_legacy, options.legacy_path, options.path);
  }
  if (has_legacy) NUDGE_TRY(RemoveLegacy(options.legacy_path));
  inbox->Start();
  return std::unique_ptr<Inbox>(std::move(inbox));
}

}  // namespace nudge::store
