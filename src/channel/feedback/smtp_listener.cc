#include "channel/feedback/smtp_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>

#include "channel/feedback/internal/text.h"

namespace nudge::channel {

using feedback_internal::CleanText;
using feedback_internal::IStartsWith;
using feedback_internal::Trim;

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxCommandLine = 4096;    // RFC 5321 allows 512; be lenient
constexpr size_t kMaxDataLine = 64 * 1024;  // longer lines are taken in pieces

void NameThread() { pthread_setname_np(pthread_self(), "smtp-in"); }

// One client connection: buffered line reading with deadlines, and replies. Every wait also
// watches the listener's wake descriptor so that Stop() interrupts it.
class Connection {
 public:
  enum class Read { kLine, kPartial, kTimeout, kClosed, kStopping };

  Connection(int fd, int wake_fd) : fd_(fd), wake_fd_(wake_fd) {}

  // Reads a line without its line end. A line longer than `max` comes in pieces of `max`
  // bytes marked kPartial, its last piece marked kLine.
  Read ReadLine(std::string& line, SteadyClock::time_point deadline, size_t max) {
    for (;;) {
      const size_t nl = buffer_.find('\n', start_);
      const size_t available = (nl == std::string::npos ? buffer_.size() : nl) - start_;
      if (available > max || (nl == std::string::npos && available >= max)) {
        size_t take = max;
        if (take > 1 && buffer_[start_ + take - 1] == '\r') --take;  // keep CR with its LF
        line.assign(buffer_, start_, take);
        start_ += take;
        Compact();
        return Read::kPartial;
      }
      if (nl != std::string::npos) {
        line.assign(buffer_, start_, nl - start_);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        start_ = nl + 1;
        Compact();
        return Read::kLine;
      }
      const Read got = Fill(deadline);
      if (got != Read::kLine) return got;
    }
  }

  bool Reply(std::string_view text) {
    std::string out(text);
    out += "\r\n";
    size_t sent = 0;
    while (sent < out.size()) {
      const ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return true;
  }

 private:
  void Compact() {
    if (start_ == buffer_.size()) {
      buffer_.clear();
      start_ = 0;
    } else if (start_ > 64 * 1024) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
  }

  // Waits for and appends more bytes; kLine means some arrived.
  Read Fill(SteadyClock::time_point deadline) {
    for (;;) {
      const auto now = SteadyClock::now();
      if (now >= deadline) return Read::kTimeout;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      const int r = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Read::kClosed;
      }
      if (r == 0) continue;  // the deadline check above decides
      if (fds[1].revents != 0) return Read::kStopping;
      if (fds[0].revents == 0) continue;
      char chunk[16 * 1024];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
        return Read::kLine;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return Read::kClosed;
    }
  }

  int fd_;
  int wake_fd_;
  std::string buffer_;
  size_t start_ = 0;
};

// The path of "FROM:<path> params" / "TO:<path> params" (without <>), and the params.
bool ParsePath(std::string_view arg, std::string_view keyword, std::string& path,
               std::string_view& params) {
  if (!IStartsWith(arg, keyword)) return false;
  std::string_view rest = Trim(arg.substr(keyword.size()));
  if (!rest.empty() && rest.front() == '<') {
    const size_t close = rest.find('>');
    if (close == std::string_view::npos) return false;
    path.assign(rest.substr(1, close - 1));
    params = Trim(rest.substr(close + 1));
  } else {
    const size_t space = rest.find(' ');
    path.assign(rest.substr(0, space));
    params = space == std::string_view::npos ? std::string_view() : Trim(rest.substr(space));
    if (path.empty()) return false;
  }
  // A source route ("@a,@b:user@c") is ignored, as RFC 5321 says a server may.
  const size_t colon = path.find(':');
  if (!path.empty() && path.front() == '@' && colon != std::string::npos) path.erase(0, colon + 1);
  return path.find_first_of(" \t\r\n") == std::string::npos;
}

// The SIZE= value among MAIL parameters, or -1 when absent, -2 when malformed.
int64_t SizeParam(std::string_view params) {
  size_t pos = 0;
  while (pos < params.size()) {
    size_t end = params.find(' ', pos);
    if (end == std::string_view::npos) end = params.size();
    const std::string_view p = params.substr(pos, end - pos);
    if (IStartsWith(p, "SIZE=")) {
      const std::string_view digits = p.substr(5);
      if (digits.empty() || digits.size() > 15) return -2;
      int64_t v = 0;
      for (char c : digits) {
        if (c < '0' || c > '9') return -2;
        v = v * 10 + (c - '0');
      }
      return v;
    }
    pos = end + 1;
  }
  return -1;
}

std::string RemoteAddress(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

}  // namespace

SmtpListener::SmtpListener(SmtpListenerOptions options, InboundHandler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

SmtpListener::~SmtpListener() { Stop(); }

Status SmtpListener::Start() {
  if (listen_fd_ >= 0 || stopping_.load()) {
    return Status(Code::kFailedPrecondition, "the SMTP listener was already started");
  }
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, options_.address.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(options_.port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, options_.address.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(options_.port);
    len = sizeof(sockaddr_in6);
  } else {
    return Status::Invalid("not an IP address: \"" + options_.address + "\"", "address");
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 128) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::Unavailable("cannot listen on " + options_.address + ":" +
                               std::to_string(options_.port) + ": " + std::strerror(err));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    ::close(fd);
    return Status::Unavailable(std::string("eventfd: ") + std::strerror(errno));
  }
  listen_fd_ = fd;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  return Status::Ok();
}

void SmtpListener::Stop() {
  if (listen_fd_ < 0 || stopping_.exchange(true)) return;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof one);
  { std::lock_guard<std::mutex> lock(mutex_); }
  ready_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [fd, remote] : pending_) {
    Connection(fd, wake_fd_).Reply("421 4.3.2 " + options_.hostname + " Service shutting down");
    ::close(fd);
  }
  pending_.clear();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void SmtpListener::AcceptLoop() {
  NameThread();
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let sessions end
      }
      continue;
    }
    // Bounds a send() to a client that does not read its replies.
    const timeval send_timeout{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    std::unique_lock<std::mutex> lock(mutex_);
    if (pending_.size() >= options_.max_pending) {
      lock.unlock();
      Connection(fd, wake_fd_).Reply("421 4.3.2 " + options_.hostname + " Too busy, try later");
      ::close(fd);
      continue;
    }
    pending_.emplace_back(fd, RemoteAddress(ss));
    lock.unlock();
    ready_.notify_one();
  }
}

void SmtpListener::WorkerLoop() {
  NameThread();
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return stopping_.load() || !pending_.empty(); });
    if (stopping_.load()) return;  // Stop() closes what is still pending
    auto [fd, remote] = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    Serve(fd, remote);
    ::close(fd);
  }
}

void SmtpListener::Serve(int fd, const std::string& remote) {
  Connection c(fd, wake_fd_);
  const std::string& host = options_.hostname;
  const auto session_end = SteadyClock::now() + options_.session_timeout;
  auto deadline = [&](std::chrono::milliseconds wait) {
    return std::min(SteadyClock::now() + wait, session_end);
  };
  ReportLimits limits = options_.limits;
  limits.max_message_bytes = std::max(limits.max_message_bytes, options_.max_message_bytes);

  if (!c.Reply("220 " + host + " ESMTP nudge bounce intake")) return;
  bool have_helo = false;
  bool in_transaction = false;
  size_t errors = 0;
  InboundMessage message;
  message.remote_address = remote;
  auto reset = [&] {
    in_transaction = false;
    message.mail_from.clear();
    message.rcpt_to.clear();
    message.data.clear();
  };
  // Ends the session on a timeout, Stop() or a closed connection, after telling the client.
  auto end_on = [&](Connection::Read r) {
    if (r == Connection::Read::kTimeout) {
      c.Reply("421 4.4.2 " + host + " Error: timeout exceeded");
    } else if (r == Connection::Read::kStopping) {
      c.Reply("421 4.3.2 " + host + " Service shutting down");
    }
  };

  std::string line;
  for (;;) {
    if (errors >= options_.max_errors) {
      c.Reply("421 4.7.0 " + host + " Error: too many errors");
      return;
    }
    Connection::Read r = c.ReadLine(line, deadline(options_.command_timeout), kMaxCommandLine);
    if (r == Connection::Read::kPartial) {
      while (r == Connection::Read::kPartial) {
        r = c.ReadLine(line, deadline(options_.command_timeout), kMaxCommandLine);
      }
      if (r != Connection::Read::kLine) return end_on(r);
      ++errors;
      if (!c.Reply("500 5.5.2 Error: line too long")) return;
      continue;
    }
    if (r != Connection::Read::kLine) return end_on(r);

    const std::string_view command = Trim(line);
    const size_t space = command.find(' ');
    std::string verb(command.substr(0, space));
    for (char& ch : verb) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    const std::string_view arg =
        space == std::string_view::npos ? std::string_view() : Trim(command.substr(space + 1));

    std::string reply;
    if (verb == "HELO" || verb == "EHLO") {
      if (arg.empty()) {
        ++errors;
        reply = "501 5.5.4 Syntax: " + verb + " hostname";
      } else {
        message.helo = CleanText(arg, 255);
        have_helo = true;
        reset();
        if (verb == "HELO") {
          reply = "250 " + host;
        } else {
          reply = "250-" + host + "\r\n250-PIPELINING\r\n250-SIZE " +
                  std::to_string(options_.max_message_bytes) +
                  "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8";
        }
      }
    } else if (verb == "MAIL") {
      std::string path;
      std::string_view params;
      if (!have_helo) {
        ++errors;
        reply = "503 5.5.1 Error: send HELO/EHLO first";
      } else if (in_transaction) {
        ++errors;
        reply = "503 5.5.1 Error: nested MAIL command";
      } else if (!ParsePath(arg, "FROM:", path, params)) {
        ++errors;
        reply = "501 5.5.4 Syntax: MAIL FROM:<address>";
      } else if (const int64_t size = SizeParam(params); size == -2) {
        ++errors;
        reply = "501 5.5.4 Bad SIZE parameter";
      } else if (size >= 0 && static_cast<uint64_t>(size) > options_.max_message_bytes) {
        reply = "552 5.3.4 Message size exceeds fixed limit";
      } else {
        in_transaction = true;
        message.mail_from = std::move(path);
        reply = "250 2.1.0 Ok";
      }
    } else if (verb == "RCPT") {
      std::string path;
      std::string_view params;
      if (!in_transaction) {
        ++errors;
        reply = "503 5.5.1 Error: need MAIL command";
      } else if (!ParsePath(arg, "TO:", path, params) || path.empty()) {
        ++errors;
        reply = "501 5.1.3 Bad recipient address syntax";
      } else if (message.rcpt_to.size() >= options_.max_recipients) {
        reply = "452 4.5.3 Error: too many recipients";
      } else {
        message.rcpt_to.push_back(std::move(path));
        reply = "250 2.1.5 Ok";
      }
    } else if (verb == "DATA") {
      if (!arg.empty()) {
        ++errors;
        reply = "501 5.5.4 Syntax: DATA";
      } else if (!in_transaction) {
        ++errors;
        reply = "503 5.5.1 Error: need MAIL command";
      } else if (message.rcpt_to.empty()) {
        ++errors;
        reply = "554 5.5.1 Error: no valid recipients";
      } else {
        if (!c.Reply("354 End data with <CR><LF>.<CR><LF>")) return;
        bool at_line_start = true;
        bool too_large = false;
        for (;;) {
          r = c.ReadLine(line, deadline(options_.data_timeout), kMaxDataLine);
          if (r != Connection::Read::kLine && r != Connection::Read::kPartial) return end_on(r);
          if (r == Connection::Read::kLine && at_line_start && line == ".") break;
          std::string_view piece = line;
          if (at_line_start && !piece.empty() && piece.front() == '.') piece.remove_prefix(1);
          if (!too_large) {
            if (message.data.size() + piece.size() + 2 > options_.max_message_bytes) {
              too_large = true;
              std::string().swap(message.data);
            } else {
              message.data += piece;
              if (r == Connection::Read::kLine) message.data += "\r\n";
            }
          }
          at_line_start = r == Connection::Read::kLine;
        }
        if (too_large) {
          reply = "552 5.3.4 Error: message too large";
        } else {
          const Result<std::vector<Feedback>> parsed = ParseReport(message.data, limits);
          Status handled;
          try {
            handled = handler_(message, parsed);
          } catch (const std::exception& e) {
            handled = Status::Internal(std::string("handler threw: ") + e.what());
          }
          if (handled.ok()) {
            reply = "250 2.0.0 Ok: queued as " + std::to_string(++received_);
          } else if (handled.code() == Code::kInvalidArgument) {
            reply = "550 5.6.0 " + CleanText(handled.ToString(), 200);
          } else {
            reply = "451 4.3.0 " + CleanText(handled.ToString(), 200);
          }
        }
        reset();
      }
    } else if (verb == "RSET") {
      reset();
      reply = "250 2.0.0 Ok";
    } else if (verb == "NOOP") {
      reply = "250 2.0.0 Ok";
    } else if (verb == "QUIT") {
      c.Reply("221 2.0.0 Bye");
      return;
    } else if (verb == "VRFY") {
      reply = "252 2.0.0 Cannot VRFY user, but will accept message";
    } else if (verb == "HELP") {
      reply = "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP";
    } else if (verb == "EXPN" || verb == "TURN" || verb == "ETRN" || verb == "STARTTLS" ||
               verb == "AUTH" || verb == "BDAT") {
      reply = "502 5.5.1 Error: command not implemented";
    } else {
      ++errors;
      reply = "500 5.5.2 Error: command not recognized";
    }
    if (!c.Reply(reply)) return;
  }
}

}  // namespace nudge::channel
