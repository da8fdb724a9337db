#include "profile/aggregates.h"

#include <gtest/gtest.h>

namespace nudge::profile {
namespace {

constexpr Millis kDay = 86400000;

std::shared_ptr<rules::AggregateSpec> Spec(std::string_view condition) {
  auto c = rules::Condition::Compile(condition);
  EXPECT_TRUE(c) << c.error().ToString();
  return (*c)->aggregates()[0];
}

TEST(Aggregates, WindowedCountsDropExactlyWhenEventsLeaveTheWindow) {
  auto spec = Spec(R"(count(event "Page Viewed" within 7d) >= 3)");
  AggregateState s;
  const Millis t0 = 1000 * kDay;
  s.Add(*spec, t0, 0);
  s.Add(*spec, t0 + 1 * kDay, 0);
  s.Add(*spec, t0 + 2 * kDay, 0);
  EXPECT_EQ(s.ValueAt(*spec, t0 + 2 * kDay).num, 3);
  EXPECT_EQ(*s.Expiry(*spec, t0 + 2 * kDay), t0 + 7 * kDay);  // the first visit turns 7 days old
  EXPECT_EQ(s.ValueAt(*spec, t0 + 7 * kDay - 1).num, 3);
  EXPECT_EQ(s.ValueAt(*spec, t0 + 7 * kDay).num, 2);
  EXPECT_EQ(*s.Expiry(*spec, t0 + 7 * kDay), t0 + 8 * kDay);
  s.Prune(*spec, t0 + 20 * kDay);
  EXPECT_EQ(s.ValueAt(*spec, t0 + 20 * kDay).num, 0);
  EXPECT_FALSE(s.Expiry(*spec, t0 + 20 * kDay));
}

TEST(Aggregates, SumsFirstLastAndAllTime) {
  auto sum = Spec(R"(sum(properties.revenue of event "Order Completed" within 30d) > 1)");
  AggregateState s;
  s.Add(*sum, 10 * kDay, 100);
  s.Add(*sum, 20 * kDay, 50.5);
  EXPECT_DOUBLE_EQ(s.ValueAt(*sum, 25 * kDay).num, 150.5);
  EXPECT_DOUBLE_EQ(s.ValueAt(*sum, 45 * kDay).num, 50.5);

  auto last = Spec(R"(last(event "Order Completed").timestamp < now)");
  AggregateState l;
  EXPECT_TRUE(l.ValueAt(*last, 0).is_null());
  l.Add(*last, 20 * kDay, 0);
  l.Add(*last, 10 * kDay, 0);  // out of order: a historical import
  EXPECT_EQ(l.ValueAt(*last, 30 * kDay).ms, 20 * kDay);

  auto ever = Spec(R"(event "Signed Up")");
  AggregateState e;
  e.Add(*ever, 1, 0);
  EXPECT_TRUE(e.ValueAt(*ever, 100000 * kDay).truthy());
}

TEST(Aggregates, ManyEventsStayBoundedAndNeverUndercount) {
  auto spec = Spec(R"(count(event "Page Viewed" within 1d) >= 1)");
  AggregateState s;
  for (int i = 0; i < 1000; ++i) s.Add(*spec, i * 60000LL, 0);  // one a minute
  EXPECT_EQ(s.ValueAt(*spec, 1000 * 60000LL).num, 1000);
  EXPECT_LE(s.MemoryBytes(), sizeof(AggregateState) + 64 * 24);
  // A day after the last event everything has left.
  EXPECT_EQ(s.ValueAt(*spec, 999 * 60000LL + kDay).num, 0);
}

TEST(Aggregates, MergingTwoContactsAddsUp) {
  auto spec = Spec(R"(count(event "Page Viewed" within 7d) >= 3)");
  AggregateState a, b;
  a.Add(*spec, 1 * kDay, 0);
  b.Add(*spec, 2 * kDay, 0);
  b.Add(*spec, 3 * kDay, 0);
  a.Merge(*spec, b);
  EXPECT_EQ(a.ValueAt(*spec, 3 * kDay).num, 3);
  EXPECT_EQ(*a.Expiry(*spec, 3 * kDay), 8 * kDay);
}

}  // namespace
}  // namespace nudge::profile
