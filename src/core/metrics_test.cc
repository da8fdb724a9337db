#include "core/metrics.h"

#include <gtest/gtest.h>

namespace nudge::core {
namespace {

TEST(Metrics, RendersPrometheusText) {
  MetricsRegistry reg;
  reg.GetCounter("nudge_events_rejected_total", "Rejected events.", "{reason=\"invalid_json\"}")
      .Add(3);
  auto& h = reg.GetHistogram("nudge_commit_seconds", "Commit time.", {0.001, 0.01});
  h.Observe(0.0005);
  h.Observe(0.005);
  h.Observe(1);
  reg.AddGauge("nudge_queue_depth", "Depth.", "{queue=\"w\"}", [] { return 7.0; });
  const std::string text = reg.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE nudge_events_rejected_total counter"), std::string::npos);
  EXPECT_NE(text.find("nudge_events_rejected_total{reason=\"invalid_json\"} 3"), std::string::npos);
  EXPECT_NE(text.find("nudge_commit_seconds_bucket{le=\"0.001\"} 1"), std::string::npos);
  EXPECT_NE(text.find("nudge_commit_seconds_bucket{le=\"0.01\"} 2"), std::string::npos);
  EXPECT_NE(text.find("nudge_commit_seconds_bucket{le=\"+Inf\"} 3"), std::string::npos);
  EXPECT_NE(text.find("nudge_commit_seconds_count 3"), std::string::npos);
  EXPECT_NE(text.find("nudge_queue_depth{queue=\"w\"} 7"), std::string::npos);
}

TEST(Metrics, QuantileInterpolatesInsideBuckets) {
  Histogram h({1, 2, 3, 4});
  for (int i = 0; i < 100; ++i) h.Observe(0.5 + (i % 4));
  EXPECT_NEAR(h.Quantile(0.5), 2.0, 0.01);
  EXPECT_NEAR(h.Quantile(0.99), 3.96, 0.05);
}

}  // namespace
}  // namespace nudge::core
