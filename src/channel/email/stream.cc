#include "channel/email/internal/stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nudge::channel {

namespace {

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

int RemainingMillis(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// OpenSSL writes to the socket with write(2), which raises SIGPIPE when the peer has gone.
// Block it in this thread around TLS calls and swallow one that became pending meanwhile.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace

Result<std::shared_ptr<SSL_CTX>> NewClientSslContext(bool verify, const std::string& ca_file) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) return Err(Status::Internal("TLS: " + OpenSslErrors()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    const int ok = ca_file.empty()
                       ? SSL_CTX_set_default_verify_paths(ctx.get())
                       : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    if (ok != 1)
      return Err(Status::Invalid("TLS: cannot load the CA certificates" +
                                 (ca_file.empty() ? std::string() : " from '" + ca_file + "'") +
                                 ": " + OpenSslErrors()));
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

Result<std::unique_ptr<Stream>> Stream::Connect(const std::string& host, int port,
                                                Deadline deadline) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (gai != 0)
    return Err(Status::Unavailable("cannot resolve " + host + ": " + gai_strerror(gai)));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    std::unique_ptr<Stream> stream(new Stream(fd));
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = std::strerror(errno);
        continue;
      }
      Status waited = stream->WaitFor(POLLOUT, deadline, "connecting");
      if (!waited.ok()) {
        last_error = waited.message();
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last_error = std::strerror(err);
        continue;
      }
    }
    return stream;
  }
  return Err(Status::Unavailable("connect to " + where + ": " + last_error));
}

Stream::~Stream() {
  if (ssl_) {
    SigpipeBlock block;
    SSL_shutdown(ssl_);  // best effort close_notify; the socket is non-blocking
    SSL_free(ssl_);
  }
  if (fd_ >= 0) close(fd_);
}

Status Stream::WaitFor(short events, Deadline deadline, const char* what) {
  while (true) {
    pollfd p{fd_, events, 0};
    const int n = poll(&p, 1, RemainingMillis(deadline));
    if (n > 0) return Status::Ok();
    if (n == 0) return Status::Unavailable(std::string("timed out ") + what);
    if (errno != EINTR) return Status::Unavailable(std::string("poll: ") + std::strerror(errno));
  }
}

Status Stream::StartTls(const std::shared_ptr<SSL_CTX>& ctx, const std::string& host,
                        Deadline deadline) {
  ctx_ = ctx;
  ssl_ = SSL_new(ctx.get());
  if (!ssl_) return Status::Internal("TLS: " + OpenSslErrors());
  SSL_set_fd(ssl_, fd_);
  if (IsIpLiteral(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
  }
  SigpipeBlock block;
  while (true) {
    ERR_clear_error();
    const int r = SSL_connect(ssl_);
    if (r == 1) return Status::Ok();
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ) {
      NUDGE_TRY(WaitFor(POLLIN, deadline, "in the TLS handshake"));
    } else if (e == SSL_ERROR_WANT_WRITE) {
      NUDGE_TRY(WaitFor(POLLOUT, deadline, "in the TLS handshake"));
    } else {
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK)
        return Status::Unavailable(std::string("TLS handshake: certificate verification failed: ") +
                                   X509_verify_cert_error_string(verify));
      return Status::Unavailable("TLS handshake failed: " + OpenSslErrors());
    }
  }
}

Status Stream::Write(std::string_view data, Deadline deadline) {
  if (ssl_) {
    SigpipeBlock block;
    while (!data.empty()) {
      ERR_clear_error();
      const int n =
          SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_WRITE) {
        NUDGE_TRY(WaitFor(POLLOUT, deadline, "sending"));
      } else if (e == SSL_ERROR_WANT_READ) {
        NUDGE_TRY(WaitFor(POLLIN, deadline, "sending"));
      } else {
        return Status::Unavailable("TLS write failed: " + OpenSslErrors());
      }
    }
    return Status::Ok();
  }
  while (!data.empty()) {
    const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      NUDGE_TRY(WaitFor(POLLOUT, deadline, "sending"));
    } else if (errno != EINTR) {
      return Status::Unavailable(std::string("send: ") + std::strerror(errno));
    }
  }
  return Status::Ok();
}

Status Stream::ReadSome(std::string& out, Deadline deadline) {
  char buf[16384];
  if (ssl_) {
    SigpipeBlock block;
    while (true) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        return Status::Ok();
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ) {
        NUDGE_TRY(WaitFor(POLLIN, deadline, "waiting for the relay's reply"));
      } else if (e == SSL_ERROR_WANT_WRITE) {
        NUDGE_TRY(WaitFor(POLLOUT, deadline, "waiting for the relay's reply"));
      } else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        return Status::Unavailable("the relay closed the connection");
      } else {
        return Status::Unavailable("TLS read failed: " + OpenSslErrors());
      }
    }
  }
  while (true) {
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      return Status::Ok();
    }
    if (n == 0) return Status::Unavailable("the relay closed the connection");
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      NUDGE_TRY(WaitFor(POLLIN, deadline, "waiting for the relay's reply"));
    } else if (errno != EINTR) {
      return Status::Unavailable(std::string("recv: ") + std::strerror(errno));
    }
  }
}

bool Stream::Readable() {
  if (ssl_ && SSL_pending(ssl_) > 0) return true;
  pollfd p{fd_, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

}  // namespace nudge::channel
