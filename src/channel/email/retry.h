// RetryPolicy: when to try a temporarily failed message again (exponential backoff with
// jitter), and when to give up. The outbox that owns a message persists its attempt count and
// next-try time and asks the policy after each failure; EmailSender itself only retries
// connection problems, a bounded number of times within one Submit.
//
// RateLimiter: the pacing EmailSender applies per relay (at most `rate` messages started per
// second, evenly spaced), written as a pure function of the time so it can be tested exactly.
//
// Both are small value types: RetryPolicy is immutable and thread-safe; RateLimiter is not
// thread-safe (EmailSender guards it with its queue lock).
#pragma once

#include <cstdint>
#include <optional>

#include "channel/email/smtp_client.h"
#include "core/clock.h"

namespace nudge::channel {

struct RetryOptions {
  core::Millis initial_delay = 60'000;            // after the first failure
  double multiplier = 2.0;                        // each later delay grows by this
  core::Millis max_delay = 4 * 3'600'000LL;       // the delay never grows past this
  double jitter = 0.2;                            // +/- this fraction, so retries spread out
  int max_attempts = 10;                          // attempts in all, the first included
  core::Millis give_up_after = 3 * 86'400'000LL;  // since the first attempt (RFC 5321: 4-5 d)
};

struct RetryDecision {
  bool retry = false;
  core::Millis at = 0;  // when to try again (epoch ms), when retry
  // "permanent failure", "gave up after 10 attempts", "gave up after 3 days".
  const char* reason = "";
};

class RetryPolicy {
 public:
  RetryPolicy() = default;
  explicit RetryPolicy(RetryOptions options) : options_(options) {}

  // The delay before attempt number `attempts + 1`, after `attempts` failed ones (>= 1),
  // before jitter: initial * multiplier^(attempts-1), capped at max_delay.
  core::Millis BaseDelay(int attempts) const;

  // What to do after a failed attempt. attempts: attempts made so far, this one included.
  // first_attempt_at and now: epoch ms. unit_random: a number in [0, 1) that picks the jitter
  // (pass a random one; tests pass fixed values). A permanent failure is never retried; a sent
  // outcome needs no retry.
  RetryDecision Decide(const SendOutcome& outcome, int attempts, core::Millis first_attempt_at,
                       core::Millis now, double unit_random) const;

  const RetryOptions& options() const { return options_; }

 private:
  RetryOptions options_;
};

class RateLimiter {
 public:
  // rate: messages per second; <= 0 means no limit.
  explicit RateLimiter(double rate = 0);

  // Takes a slot at now_micros (a monotonic clock) when one is free.
  bool TryAcquire(int64_t now_micros);
  // The earliest time a slot is free (now_micros or later).
  int64_t NextFree(int64_t now_micros) const;
  bool limited() const { return interval_micros_ > 0; }

 private:
  int64_t interval_micros_ = 0;
  int64_t next_micros_ = 0;
};

}  // namespace nudge::channel
