#include "core/time.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>

namespace nudge::core {
namespace {

TEST(Iso8601, ParsesTheFormsSdksSend) {
  EXPECT_EQ(*ParseIso8601("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseIso8601("2026-11-24T10:00:00.123Z"), 1795514400123);
  EXPECT_EQ(*ParseIso8601("2026-11-24T12:00:00.123+02:00"), 1795514400123);
  EXPECT_EQ(*ParseIso8601("2026-11-24T05:30:00.123-0430"), 1795514400123);
  EXPECT_EQ(*ParseIso8601("2026-11-24 10:00:00.123456Z"), 1795514400123);
  EXPECT_EQ(*ParseIso8601("2026-11-24"), 1795478400000);
  EXPECT_EQ(*ParseIso8601("2026-11-24T10:00Z"), 1795514400000);
}

TEST(Iso8601, RejectsWithTheColumn) {
  auto r = ParseIso8601("2026-13-01T00:00:00Z");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("month"), std::string::npos);
  r = ParseIso8601("2026-02-30");
  ASSERT_FALSE(r);
  r = ParseIso8601("2026-11-24T10:00:00Zjunk");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("column 21"), std::string::npos) << r.error().message();
  EXPECT_FALSE(ParseIso8601("yesterday"));
  EXPECT_FALSE(ParseIso8601(""));
}

TEST(Iso8601, FormatsRoundTrip) {
  EXPECT_EQ(FormatIso8601(1795514400123), "2026-11-24T10:00:00.123Z");
  EXPECT_EQ(FormatIso8601(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIso8601(-1), "1969-12-31T23:59:59.999Z");
  for (Millis t : {951782400000LL, 4107542399999LL, 1709164800500LL})
    EXPECT_EQ(*ParseIso8601(FormatIso8601(t)), t);
  EXPECT_EQ(FormatIso8601(253402300800000LL), "10000-01-01T00:00:00.000Z");
}

// The same text as the C library's gmtime_r + strftime, over years 1970..2400.
TEST(Iso8601, FormatsAsGmtimeDoes) {
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 5000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const Millis t = static_cast<Millis>(x % 13569465600000ULL);
    const time_t secs = static_cast<time_t>(t / 1000);
    tm parts{};
    gmtime_r(&secs, &parts);
    char want[64];
    const size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &parts);
    char ms[8];
    std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(t % 1000));
    ASSERT_EQ(FormatIso8601(t), std::string(want, n) + ms) << t;
  }
}

// A zone name the loader would read as a path is no zone: a trait sent with the public write
// key could otherwise open any file (a FIFO stalled the server).
TEST(Time, TimeZoneNamesAreNamesNotPaths) {
  for (const char* ok : {"UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5",
                         "America/Port-au-Prince"})
    EXPECT_TRUE(IsTimeZoneName(ok)) << ok;
  for (const char* bad : {"", "/etc/localtime", "../../../../usr/share/zoneinfo/Asia/Tokyo",
                          "Europe/../../x", "Europe//Berlin", "Europe/", "localtime",
                          "file:/tmp/fifo", "Asia/Tokyo ", "Fixed/UTC+05:00:00"})
    EXPECT_FALSE(IsTimeZoneName(bad)) << bad;
  EXPECT_FALSE(IsTimeZoneName(std::string(65, 'a')));
  EXPECT_FALSE(IsTimeZoneName(std::string("Europe/Berlin\0x", 15)));
}

}  // namespace
}  // namespace nudge::core
