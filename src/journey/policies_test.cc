#include "journey/policies.h"

#include <gtest/gtest.h>

#include "core/time.h"

namespace nudge::journey {
namespace {

Millis T(const char* iso) { return *core::ParseIso8601(iso); }

TEST(LocalTime, NineInTheMorningAcrossTheDaylightSavingChange) {
  // Berlin leaves summer time on 2026-10-25 at 03:00 local.
  EXPECT_EQ(NextLocalTime(T("2026-10-24T08:00:00Z"), "Europe/Berlin", 9 * 60, 0x7F),
            T("2026-10-25T08:00:00Z"));  // 09:00 CET
  EXPECT_EQ(NextLocalTime(T("2026-10-23T05:00:00Z"), "Europe/Berlin", 9 * 60, 0x7F),
            T("2026-10-23T07:00:00Z"));  // 09:00 CEST, the same day
  // New York springs forward on 2027-03-14 at 02:00: 02:30 does not exist that day.
  EXPECT_EQ(NextLocalTime(T("2027-03-14T05:00:00Z"), "America/New_York", 2 * 60 + 30, 0x7F),
            T("2027-03-14T07:00:00Z"));
  // Weekdays only: Friday evening waits for Monday.
  EXPECT_EQ(NextLocalTime(T("2026-11-06T18:00:00Z"), "UTC", 9 * 60, 0x1F),
            T("2026-11-09T09:00:00Z"));
}

TEST(QuietHours, WrapPastMidnightAndEndAtLocalMorning) {
  const QuietHours q{21 * 60, 8 * 60};
  EXPECT_FALSE(QuietUntil(T("2026-11-02T15:00:00Z"), "Europe/Berlin", q));  // 16:00
  EXPECT_EQ(*QuietUntil(T("2026-11-02T21:30:00Z"), "Europe/Berlin", q), T("2026-11-03T07:00:00Z"));
  EXPECT_EQ(*QuietUntil(T("2026-11-03T05:00:00Z"), "Europe/Berlin", q), T("2026-11-03T07:00:00Z"));
  EXPECT_FALSE(QuietUntil(T("2026-11-02T10:00:00Z"), "UTC", QuietHours{12 * 60, 13 * 60}));
  EXPECT_TRUE(QuietUntil(T("2026-11-02T12:30:00Z"), "UTC", QuietHours{12 * 60, 13 * 60}));
}

TEST(Policies, ParseAndRefuse) {
  auto p = ParsePolicies(
      "timezone: Europe/Paris\nquiet_hours: { sms: { from: '20:00', to: '09:00' } }\n"
      "frequency_caps: { email: { max: 3, per: 7d } }\n",
      "policies.yaml");
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(p->timezone, "Europe/Paris");
  EXPECT_EQ(p->quiet_hours.at("sms").from_minute, 20 * 60);
  EXPECT_EQ(p->caps.at("email").max, 3);
  auto again = ParsePolicies(ToJson(*p), "stored");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(ToJson(*again), ToJson(*p));
  EXPECT_EQ(ParsePolicies("timezone: Mars/Olympus\n", "p").error().where(), "p:1:11");
  EXPECT_FALSE(ParsePolicies("quiet_hours: { email: { from: '25:00', to: '08:00' } }\n", "p"));
  EXPECT_FALSE(ParsePolicies("quiet_hours: { fax: { from: '21:00', to: '08:00' } }\n", "p"));
  // A webhook goes to a system: it is neither held nor capped, so naming it is a mistake.
  auto hooks = ParsePolicies("quiet_hours: { webhook: { from: '21:00', to: '08:00' } }\n", "p");
  ASSERT_FALSE(hooks);
  EXPECT_NE(hooks.error().message().find("webhooks have no quiet hours"), std::string::npos);
  EXPECT_FALSE(ParsePolicies("frequency_caps: { webhook: { max: 3, per: 7d } }\n", "p"));
  EXPECT_EQ(ChooseTimeZone("Nowhere/Else", "Asia/Tokyo"), "Asia/Tokyo");
  EXPECT_EQ(ChooseTimeZone("", ""), "UTC");
}

}  // namespace
}  // namespace nudge::journey

namespace nudge::journey {
namespace {

TEST(Policies, CurrencyIsAnIsoCodeAndReadsBack) {
  auto p = ParsePolicies("currency: EUR\n", "policies.yaml");
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(p->currency, "EUR");
  EXPECT_NE(ToJson(*p).find("\"currency\":\"EUR\""), std::string::npos);
  auto bad = ParsePolicies("timezone: UTC\ncurrency: euro\n", "policies.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().where(), "policies.yaml:2:11");
}

}  // namespace
}  // namespace nudge::journey
