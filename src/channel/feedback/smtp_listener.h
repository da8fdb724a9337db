// SmtpListener: a small SMTP server (RFC 5321) that receives bounces and complaint reports,
// for an MTA that relays the bounce address to nudge (Postfix `transport_maps` to
// smtp:[127.0.0.1]:2526, an ESP's inbound route, a test).
//
// Plain TCP (no STARTTLS, no AUTH: bind it to the loopback or a private address). Commands:
// HELO, EHLO (PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8), MAIL (the null
// sender <> that bounces use is accepted; SIZE= checked), RCPT, DATA (dot-unstuffing, LF or
// CRLF line ends), RSET, NOOP, QUIT, VRFY (252), HELP. Each message received is parsed with
// ParseReport and handed, with its parse result, to the handler on the session's thread; the
// client gets "250" only after the handler returned Ok, "451 4.3.0" (retry later) when it
// failed, "550 5.6.0" when it failed with kInvalidArgument (the handler refuses the message
// for good). A message over max_message_bytes is read to its end and refused with 552.
// Timeouts close idle or slow sessions with 421; so does Stop().
//
// Threads: one acceptor and `threads` session threads (one session each, at a time), all
// named "smtp-in"; up to `max_pending` accepted connections wait for a session thread, more
// are told 421 and closed. Start() and Stop() from one owner thread; port() is thread-safe.
// The handler may be called from several session threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "channel/feedback/report.h"

namespace nudge::channel {

struct SmtpListenerOptions {
  std::string address = "127.0.0.1";   // IPv4 or IPv6 literal to bind
  uint16_t port = 0;                   // 0: any free port (see port())
  std::string hostname = "localhost";  // in the greeting and the EHLO reply
  int threads = 2;
  size_t max_pending = 16;
  size_t max_message_bytes = 10 << 20;  // also the SIZE advertised
  size_t max_recipients = 100;
  size_t max_errors = 10;  // bad commands before the session is closed
  std::chrono::milliseconds command_timeout{std::chrono::minutes(5)};  // waiting for a command
  std::chrono::milliseconds data_timeout{std::chrono::minutes(3)};     // between data reads
  std::chrono::milliseconds session_timeout{std::chrono::minutes(30)};
  ReportLimits limits;  // for ParseReport (its max_message_bytes is raised to the above)
};

struct InboundMessage {
  std::string remote_address;        // "127.0.0.1:53412"
  std::string helo;                  // the name the client gave in HELO/EHLO
  std::string mail_from;             // reverse-path without <>; empty for the null sender
  std::vector<std::string> rcpt_to;  // forward-paths without <> (a VERP address says who bounced)
  std::string data;                  // the message as received, dot-unstuffed, CRLF line ends
};

// `parsed` is ParseReport's result for message.data (an error for mail that is not a report).
using InboundHandler = std::function<Status(const InboundMessage& message,
                                            const Result<std::vector<Feedback>>& parsed)>;

class SmtpListener {
 public:
  SmtpListener(SmtpListenerOptions options, InboundHandler handler);
  ~SmtpListener();  // Stop()
  SmtpListener(const SmtpListener&) = delete;
  SmtpListener& operator=(const SmtpListener&) = delete;

  // Binds, listens and starts the threads. kInvalidArgument for a bad address,
  // kUnavailable when the port cannot be bound, kFailedPrecondition when already started.
  Status Start();
  // The bound port (the chosen one when options.port was 0); 0 before Start().
  uint16_t port() const { return port_.load(); }
  // Closes the listening socket and every session (each is told 421), joins the threads.
  // Idempotent. A handler call in progress finishes first.
  void Stop();

 private:
  void AcceptLoop();
  void WorkerLoop();
  void Serve(int fd, const std::string& remote);

  const SmtpListenerOptions options_;
  const InboundHandler handler_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd made readable by Stop(); every poll() watches it
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::pair<int, std::string>> pending_;  // GUARDED_BY(mutex_): fd, remote address
  std::atomic<uint64_t> received_{0};                // messages accepted, for queue ids
};

}  // namespace nudge::channel
