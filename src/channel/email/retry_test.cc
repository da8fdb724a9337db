#include "channel/email/retry.h"

#include <gtest/gtest.h>

namespace nudge::channel {
namespace {

SendOutcome Temporary() {
  SendOutcome o;
  o.status = SendStatus::kTemporaryFailure;
  o.code = 451;
  return o;
}

TEST(RetryPolicy, BacksOffExponentiallyUpToTheCap) {
  RetryPolicy p(RetryOptions{.initial_delay = 60'000,
                             .multiplier = 2,
                             .max_delay = 600'000,
                             .jitter = 0,
                             .max_attempts = 20,
                             .give_up_after = 86'400'000});
  EXPECT_EQ(p.BaseDelay(1), 60'000);
  EXPECT_EQ(p.BaseDelay(2), 120'000);
  EXPECT_EQ(p.BaseDelay(4), 480'000);
  EXPECT_EQ(p.BaseDelay(5), 600'000);
  EXPECT_EQ(p.BaseDelay(60), 600'000);
  const RetryDecision d = p.Decide(Temporary(), 3, 1'000, 5'000, 0.5);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.at, 5'000 + 240'000);
}

TEST(RetryPolicy, JitterStaysWithinItsFraction) {
  RetryPolicy p(RetryOptions{.initial_delay = 100'000, .jitter = 0.2});
  EXPECT_EQ(p.Decide(Temporary(), 1, 0, 0, 0.0).at, 80'000);
  EXPECT_EQ(p.Decide(Temporary(), 1, 0, 0, 0.5).at, 100'000);
  EXPECT_EQ(p.Decide(Temporary(), 1, 0, 0, 0.999999).at, 119'999);
  // Two messages failing together do not come back at the same moment.
  EXPECT_NE(p.Decide(Temporary(), 2, 0, 0, 0.1).at, p.Decide(Temporary(), 2, 0, 0, 0.7).at);
}

TEST(RetryPolicy, NeverRetriesPermanentFailuresAndGivesUp) {
  RetryPolicy p(
      RetryOptions{.initial_delay = 60'000, .max_attempts = 3, .give_up_after = 3'600'000});
  SendOutcome bounce;
  bounce.status = SendStatus::kPermanentFailure;
  bounce.code = 550;
  EXPECT_FALSE(p.Decide(bounce, 1, 0, 0, 0.5).retry);
  SendOutcome sent;
  sent.status = SendStatus::kSent;
  EXPECT_FALSE(p.Decide(sent, 1, 0, 0, 0.5).retry);
  EXPECT_TRUE(p.Decide(Temporary(), 2, 0, 0, 0.5).retry);
  EXPECT_FALSE(p.Decide(Temporary(), 3, 0, 0, 0.5).retry);  // the third was the last
  // Within the attempts, but the next try would fall past the retry period.
  EXPECT_FALSE(p.Decide(Temporary(), 1, 0, 3'590'000, 0.5).retry);
  // A connection problem (no reply code) is temporary like a 4xx.
  SendOutcome lost;
  lost.status = SendStatus::kTemporaryFailure;
  EXPECT_TRUE(p.Decide(lost, 1, 0, 0, 0.5).retry);
}

TEST(RateLimiter, StartsAtMostRatePerSecondEvenlySpaced) {
  RateLimiter limiter(10);  // one every 100 ms
  int granted = 0;
  std::vector<int64_t> at;
  for (int64_t t = 0; t < 1'000'000; t += 1'000) {  // try every millisecond for a second
    if (limiter.TryAcquire(t)) {
      ++granted;
      at.push_back(t);
    }
  }
  EXPECT_EQ(granted, 10);
  for (size_t i = 1; i < at.size(); ++i) EXPECT_GE(at[i] - at[i - 1], 100'000);
  EXPECT_EQ(limiter.NextFree(950'000), 1'000'000);
  // Idle time does not save up into a burst.
  EXPECT_TRUE(limiter.TryAcquire(5'000'000));
  EXPECT_FALSE(limiter.TryAcquire(5'000'001));
}

TEST(RateLimiter, ZeroMeansNoLimit) {
  RateLimiter limiter(0);
  EXPECT_FALSE(limiter.limited());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.TryAcquire(0));
}

}  // namespace
}  // namespace nudge::channel
