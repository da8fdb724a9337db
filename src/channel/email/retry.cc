#include "channel/email/retry.h"

#include <algorithm>
#include <cmath>

namespace nudge::channel {

core::Millis RetryPolicy::BaseDelay(int attempts) const {
  const int n = std::max(attempts, 1) - 1;
  const double delay = static_cast<double>(options_.initial_delay) *
                       std::pow(std::max(options_.multiplier, 1.0), std::min(n, 60));
  return static_cast<core::Millis>(std::min(delay, static_cast<double>(options_.max_delay)));
}

RetryDecision RetryPolicy::Decide(const SendOutcome& outcome, int attempts,
                                  core::Millis first_attempt_at, core::Millis now,
                                  double unit_random) const {
  RetryDecision d;
  if (outcome.status == SendStatus::kSent) {
    d.reason = "sent";
    return d;
  }
  if (outcome.status == SendStatus::kPermanentFailure) {
    d.reason = "permanent failure";
    return d;
  }
  if (attempts >= options_.max_attempts) {
    d.reason = "gave up after the last allowed attempt";
    return d;
  }
  const double jitter = std::clamp(options_.jitter, 0.0, 1.0);
  const double r = std::clamp(unit_random, 0.0, 1.0);
  const double factor = 1.0 + jitter * (2.0 * r - 1.0);
  const core::Millis delay =
      std::max<core::Millis>(1, static_cast<core::Millis>(BaseDelay(attempts) * factor));
  if (now + delay - first_attempt_at > options_.give_up_after) {
    d.reason = "gave up: the next attempt would be past the retry period";
    return d;
  }
  d.retry = true;
  d.at = now + delay;
  d.reason = "temporary failure";
  return d;
}

RateLimiter::RateLimiter(double rate)
    : interval_micros_(rate > 0 ? std::max<int64_t>(1, static_cast<int64_t>(1e6 / rate)) : 0) {}

bool RateLimiter::TryAcquire(int64_t now_micros) {
  if (interval_micros_ == 0) return true;
  if (now_micros < next_micros_) return false;
  // Unused time does not accumulate into a burst: the next slot is one interval from now.
  next_micros_ = now_micros + interval_micros_;
  return true;
}

int64_t RateLimiter::NextFree(int64_t now_micros) const {
  return std::max(now_micros, next_micros_);
}

}  // namespace nudge::channel
