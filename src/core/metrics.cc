#include "core/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace nudge::core {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  if (value > 0)
    sum_micro_.fetch_add(static_cast<uint64_t>(value * 1e6), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running + buckets_[bounds_.size()].load(std::memory_order_relaxed);
  s.sum = static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
  return s;
}

double Histogram::Quantile(double q) const {
  const Snapshot s = Read();
  if (s.count == 0) return 0;
  const double rank = q * static_cast<double>(s.count);
  double lower = 0;
  uint64_t below = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (static_cast<double>(s.cumulative[i]) >= rank) {
      const uint64_t in_bucket = s.cumulative[i] - below;
      if (in_bucket == 0) return bounds_[i];
      return lower + (bounds_[i] - lower) * (rank - static_cast<double>(below)) /
                         static_cast<double>(in_bucket);
    }
    below = s.cumulative[i];
    lower = bounds_[i];
  }
  return bounds_.empty() ? 0 : bounds_.back();
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const std::string& labels) {
  std::lock_guard lock(mutex_);
  Family& f = families_[name];
  f.type = "counter";
  f.help = help;
  auto& slot = f.counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds) {
  std::lock_guard lock(mutex_);
  Family& f = families_[name];
  f.type = "histogram";
  f.help = help;
  if (!f.histogram) f.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *f.histogram;
}

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               const std::string& labels, std::function<double()> read) {
  std::lock_guard lock(mutex_);
  Family& f = families_[name];
  f.type = "gauge";
  f.help = help;
  f.gauges[labels] = std::move(read);
}

namespace {
std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact form
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}
}  // namespace

std::string MetricsRegistry::RenderPrometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, c] : f.counters)
      out += name + labels + " " + std::to_string(c->Value()) + "\n";
    for (const auto& [labels, read] : f.gauges) out += name + labels + " " + Number(read()) + "\n";
    if (f.histogram) {
      const auto s = f.histogram->Read();
      const auto& bounds = f.histogram->bounds();
      for (size_t i = 0; i < bounds.size(); ++i)
        out += name + "_bucket{le=\"" + Number(bounds[i]) + "\"} " +
               std::to_string(s.cumulative[i]) + "\n";
      out += name + "_bucket{le=\"+Inf\"} " + std::to_string(s.count) + "\n";
      out += name + "_sum " + Number(s.sum) + "\n";
      out += name + "_count " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace nudge::core
