// Stream: one TCP connection, plain or TLS (OpenSSL), with a deadline on every operation.
//
// The socket is non-blocking; each call waits with poll() until its deadline, so no call can
// hang. Errors are kUnavailable with a message saying what failed ("connect to
// 127.0.0.1:2525: Connection refused", "timed out", "the relay closed the connection").
// Writes never raise SIGPIPE. Owned by one thread at a time; not thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace nudge::channel {

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline DeadlineIn(int64_t millis) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(millis);
}

// A client SSL_CTX: TLS 1.2 or later; when verify is set, the peer's certificate must chain to
// ca_file (or the system's roots when ca_file is empty) and name the host we connected to.
Result<std::shared_ptr<SSL_CTX>> NewClientSslContext(bool verify, const std::string& ca_file);

class Stream {
 public:
  // Resolves host (blocking getaddrinfo) and connects to the first address that answers.
  static Result<std::unique_ptr<Stream>> Connect(const std::string& host, int port,
                                                 Deadline deadline);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // TLS handshake over the connection; host is sent as SNI (names only) and checked against
  // the certificate when the context verifies.
  Status StartTls(const std::shared_ptr<SSL_CTX>& ctx, const std::string& host, Deadline deadline);

  Status Write(std::string_view data, Deadline deadline);
  // Appends at least one byte to out, or fails (the peer closing the connection is an error).
  Status ReadSome(std::string& out, Deadline deadline);
  // True when bytes or an end of stream are waiting (checks without blocking).
  bool Readable();
  bool tls() const { return ssl_ != nullptr; }

 private:
  explicit Stream(int fd) : fd_(fd) {}
  Status WaitFor(short events, Deadline deadline, const char* what);

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::shared_ptr<SSL_CTX> ctx_;  // keeps the context alive while ssl_ uses it
};

}  // namespace nudge::channel
