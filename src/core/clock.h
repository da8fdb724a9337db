// Clock: where every piece of nudge asks for the time. Injected, never global, so the
// simulator and the tests can run on a VirtualClock where "wait 3 days" takes no time.
//
// Times are milliseconds since the Unix epoch, UTC. SystemClock is thread-safe;
// VirtualClock is thread-safe too (an atomic), and only moves when told to.
#pragma once

#include <atomic>
#include <cstdint>

namespace nudge::core {

using Millis = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Millis NowMillis() const = 0;
};

class SystemClock final : public Clock {
 public:
  Millis NowMillis() const override;
};

class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(Millis start) : now_(start) {}
  Millis NowMillis() const override { return now_.load(std::memory_order_relaxed); }
  void Set(Millis now) { now_.store(now, std::memory_order_relaxed); }
  void Advance(Millis delta) { now_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  std::atomic<Millis> now_;
};

// A monotonic clock for measuring durations (latency histograms); not for timestamps.
int64_t MonotonicMicros();

}  // namespace nudge::core
