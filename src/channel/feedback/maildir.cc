#include "channel/feedback/maildir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <queue>

namespace nudge::channel {

namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// Moves `from` to `dir`/`name``info` without replacing a file there (a clash makes it
// `name`.1`info`, ...); returns the path it got.
Result<std::string> MoveNoReplace(const std::string& from, const std::string& dir,
                                  const std::string& name, std::string_view info = {}) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::string to =
        dir + "/" + name + (attempt == 0 ? "" : "." + std::to_string(attempt)) + std::string(info);
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
      return to;
    }
    if (errno == EEXIST) continue;
    if (errno == EINVAL || errno == ENOSYS) {
      // The file system cannot refuse to replace on rename: link (which refuses), then unlink.
      if (::link(from.c_str(), to.c_str()) == 0) {
        ::unlink(from.c_str());
        return to;
      }
      if (errno == EEXIST) continue;
      struct stat st;
      if (::lstat(to.c_str(), &st) == 0) continue;
      if (::rename(from.c_str(), to.c_str()) == 0) return to;
    }
    return Err(Status::Internal("cannot move " + from + " to " + to + ": " + ErrnoText(errno)));
  }
  return Err(Status::Internal("cannot move " + from + ": no free name in " + dir));
}

enum class ReadOutcome { kOk, kGone, kNotRegular, kFailed };

ReadOutcome ReadFile(const std::string& path, size_t max_bytes, std::string& out, Status& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return ReadOutcome::kGone;
    if (errno == ELOOP) return ReadOutcome::kNotRegular;
    error = Status::Internal("cannot open: " + ErrnoText(errno));
    return ReadOutcome::kFailed;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return ReadOutcome::kNotRegular;
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    error = Status(Code::kTooLarge, "file of " + std::to_string(st.st_size) +
                                        " bytes is over the limit of " + std::to_string(max_bytes));
    return ReadOutcome::kFailed;
  }
  out.clear();
  out.reserve(static_cast<size_t>(st.st_size));
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = Status::Internal("cannot read: " + ErrnoText(errno));
      ::close(fd);
      return ReadOutcome::kFailed;
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {  // grew while we read it
      error = Status(Code::kTooLarge, "file is over the limit of " + std::to_string(max_bytes));
      ::close(fd);
      return ReadOutcome::kFailed;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return ReadOutcome::kOk;
}

}  // namespace

MaildirReader::MaildirReader(std::string dir, MaildirOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

Result<MaildirStats> MaildirReader::Poll(const MaildirHandler& handler,
                                         const MaildirOtherHandler& other) {
  const std::string new_dir = dir_ + "/new";
  DIR* d = ::opendir(new_dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return Err(Status::NotFound("no maildir at " + dir_ + " (no new/)"));
    return Err(Status::Internal("cannot list " + new_dir + ": " + ErrnoText(errno)));
  }
  // The first max_files names in order, in memory bounded by that count (a max-heap).
  const size_t limit = options_.max_files_per_poll;
  std::priority_queue<std::string> first;
  size_t total = 0;
  errno = 0;
  while (const dirent* entry = ::readdir(d)) {
    const std::string_view name = entry->d_name;
    if (name.empty() || name.front() == '.') continue;
    ++total;
    if (limit == 0) continue;
    if (first.size() < limit) {
      first.emplace(name);
    } else if (name < first.top()) {
      first.pop();
      first.emplace(name);
    }
  }
  ::closedir(d);
  std::vector<std::string> names;
  names.reserve(first.size());
  while (!first.empty()) {
    names.push_back(first.top());
    first.pop();
  }
  std::reverse(names.begin(), names.end());

  MaildirStats stats;
  stats.remaining = total - names.size();
  std::string message;
  for (const std::string& name : names) {
    const std::string path = new_dir + "/" + name;
    Status error;
    const ReadOutcome read = ReadFile(path, options_.limits.max_message_bytes, message, error);
    if (read == ReadOutcome::kGone || read == ReadOutcome::kNotRegular) continue;
    Result<std::vector<Feedback>> parsed =
        read == ReadOutcome::kOk ? ParseReport(message, options_.limits) : Err(error);
    const bool taken = !parsed && read == ReadOutcome::kOk && other && other(name, message);
    if (!parsed && !taken) {
      const std::string failed_dir = dir_ + "/failed";
      if (::mkdir(failed_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return Err(Status::Internal("cannot create " + failed_dir + ": " + ErrnoText(errno)));
      }
      NUDGE_TRY(MoveNoReplace(path, failed_dir, name));
      stats.failed.emplace_back(name, parsed.error());
      continue;
    }
    if (!taken) {
      const Status handled = handler(name, *parsed);
      if (!handled.ok()) return Err(handled.WithPrefix(name));
    }
    const std::string cur_dir = dir_ + "/cur";
    if (::mkdir(cur_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Err(Status::Internal("cannot create " + cur_dir + ": " + ErrnoText(errno)));
    }
    // A maildir name in cur/ ends in ":2,<flags>"; S marks it read.
    const size_t info = name.find(":2,");
    NUDGE_TRY(info == std::string::npos
                  ? MoveNoReplace(path, cur_dir, name, ":2,S")
                  : MoveNoReplace(path, cur_dir, name.substr(0, info), name.substr(info)));
    ++stats.delivered;
  }
  return stats;
}

}  // namespace nudge::channel
