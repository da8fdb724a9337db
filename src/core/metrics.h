// Metrics: counters, gauges and histograms rendered in the Prometheus text format.
//
// A MetricsRegistry owns its metrics; callers keep the returned references for as long as
// the registry lives. Registration takes a mutex (start-up only); updating a metric is a
// relaxed atomic operation and safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nudge::core {

class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Histogram {
 public:
  // Upper bounds in the unit observed (seconds by convention), ascending.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Cumulative counts per bound, then the total count and the sum.
  struct Snapshot {
    std::vector<uint64_t> cumulative;
    uint64_t count;
    double sum;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }
  // The value below which the given fraction of observations fall, linearly interpolated
  // inside a bucket; an estimate as good as the buckets.
  double Quantile(double q) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound, plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum in millionths, to stay atomic without a lock
};

class MetricsRegistry {
 public:
  // name and help as Prometheus wants them; labels like {reason="invalid_json"} or "".
  Counter& GetCounter(const std::string& name, const std::string& help,
                      const std::string& labels = "");
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);
  // A gauge read at scrape time.
  void AddGauge(const std::string& name, const std::string& help, const std::string& labels,
                std::function<double()> read);

  std::string RenderPrometheus() const;

 private:
  struct Family {
    std::string type;
    std::string help;
    std::map<std::string, std::unique_ptr<Counter>> counters;  // by label set
    std::unique_ptr<Histogram> histogram;
    std::map<std::string, std::function<double()>> gauges;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;  // GUARDED_BY(mutex_)
};

}  // namespace nudge::core
