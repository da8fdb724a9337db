// EmailSender: hands messages to SMTP relays over pooled, reused connections, on its own I/O
// threads.
//
// Each relay gets `pool` I/O threads ("email-<relay>"), each owning at most one SmtpClient
// connection, opened when there is work and closed (QUIT) after `idle_timeout`. Submit() only
// queues; the callback reports the outcome later, from an I/O thread.
//
// Scheduling, in the order the I/O threads apply it:
// - Lanes: transactional mail is always taken before bulk mail, and `transactional_reserved`
//   connections per relay take only transactional mail, so a saturated bulk lane never keeps
//   a receipt or a password reset waiting for more than what is already being written.
// - Recipient domains: at most `domain_concurrency` messages to one domain are in flight at a
//   time (across all relays); domains take turns, so one big domain does not hold up the rest.
//   Within a domain and lane, messages go in submission order.
// - Relays, by priority (the order of `relays`): only the first healthy relay takes messages.
//   A relay that cannot be reached, or refuses the session (a 4xx/5xx greeting, EHLO, TLS or
//   AUTH failure), is marked down for a while (backoff from `relay_retry_initial` doubling to
//   `relay_retry_max`) and the next relay takes over; after the pause one connection probes
//   the relay again and traffic moves back once it answers. While every relay is down, queued
//   messages fail as temporary and Submit returns kUnavailable.
// - Rate: at most `rate` messages per second are started on a relay (0 = no limit).
//
// Retries: a connection problem (reset, timeout, a 421) before the message was fully written
// puts the message back at the head of its queue, up to `max_attempts` attempts in all;
// replies about the message itself (4xx, 5xx) are reported as they are, for the caller's
// RetryPolicy. After the whole message was written a lost connection is reported as a
// temporary failure with maybe_delivered set, never retried here (that would risk a duplicate).
//
// Every accepted Submit gets exactly one callback, also at Shutdown (a temporary failure
// saying so). Callbacks run on I/O threads (or the thread calling Shutdown): keep them short,
// do not block; they may call Submit.
//
// Thread-safe: Submit, QueueDepth, Stats and Shutdown may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "channel/email/smtp_client.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "core/result.h"

namespace nudge::channel {

enum class Lane { kTransactional, kBulk };
std::string_view LaneName(Lane lane);  // "transactional", "bulk"

struct SenderOptions {
  std::vector<RelayConfig> relays;  // priority order: the first is preferred
  int domain_concurrency = 0;       // max messages in flight per recipient domain; 0 = no limit
  std::string helo_name;            // empty: this host's name
  SmtpTimeouts timeouts;
  int max_attempts = 3;                      // connection attempts per message within one Submit
  size_t max_queue = 50'000;                 // Submit returns kUnavailable beyond this many waiting
  core::Millis idle_timeout = 30'000;        // close a connection idle this long
  core::Millis relay_retry_initial = 1'000;  // first pause of a relay that is down
  core::Millis relay_retry_max = 60'000;     // longest pause
  core::MetricsRegistry* metrics = nullptr;  // optional; must outlive the sender
};

using SendCallback = std::function<void(const SendOutcome&)>;

// Counters for tests and status pages.
struct RelayStats {
  std::string name;
  uint64_t sent = 0;
  uint64_t temporary = 0;
  uint64_t permanent = 0;
  uint64_t connections_opened = 0;
  uint64_t connect_failures = 0;
  int open_connections = 0;
  bool down = false;
  std::string last_error;
};

struct SenderStats {
  std::vector<RelayStats> relays;
  size_t queued = 0;     // waiting for a connection
  size_t in_flight = 0;  // being sent
  uint64_t retried = 0;  // messages put back after a connection problem
};

class EmailSender {
 public:
  // Checks the options (at least one relay, unique names, pool 1..64, rate >= 0, reserved <
  // pool, TLS settings loadable) and starts the I/O threads. No connection is opened yet.
  static Result<std::unique_ptr<EmailSender>> Create(SenderOptions options);

  // Stops as Shutdown(0) does.
  ~EmailSender();
  EmailSender(const EmailSender&) = delete;
  EmailSender& operator=(const EmailSender&) = delete;

  // Queues message (RFC 5322 bytes with CRLF, e.g. from BuildMessage, DKIM-signed) for
  // recipient. Errors, with no callback: kInvalidArgument for a malformed address or an empty
  // message; kUnavailable when the queue is full, every relay is down, or after Shutdown.
  Status Submit(std::string envelope_from, std::string recipient, std::string message, Lane lane,
                SendCallback callback);

  // Stops taking messages, lets the queue drain for up to drain_timeout, then stops the I/O
  // threads (each finishes the message it is writing, then QUITs). Messages still queued get
  // a temporary-failure callback. Idempotent.
  void Shutdown(core::Millis drain_timeout);

  size_t QueueDepth() const;
  SenderStats Stats() const;

  class Impl;

 private:
  explicit EmailSender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nudge::channel
