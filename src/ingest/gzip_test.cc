#include "ingest/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

namespace nudge::ingest {
namespace {

std::string Gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(Gzip, RoundTripsAndIsRecognisedByMagic) {
  const std::string body = R"({"batch":[]})";
  const std::string gz = Gzip(body);
  EXPECT_TRUE(LooksGzipped(gz));
  EXPECT_FALSE(LooksGzipped(body));
  EXPECT_EQ(*Gunzip(gz, 1000), body);
  EXPECT_EQ(*Gunzip(gz + gz, 1000), body + body);  // concatenated members
}

TEST(Gzip, BombsStopAtTheLimit) {
  const std::string gz = Gzip(std::string(10 << 20, 'a'));
  auto r = Gunzip(gz, 500 * 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kTooLarge);
}

TEST(Gzip, CorruptAndTruncatedStreamsAreErrors) {
  std::string gz = Gzip(std::string(1000, 'b'));
  EXPECT_EQ(Gunzip(gz.substr(0, gz.size() / 2), 5000).error().code(), Code::kInvalidArgument);
  gz[12] ^= 0x55;
  gz[13] ^= 0x55;
  EXPECT_FALSE(Gunzip(gz, 5000));
  EXPECT_FALSE(Gunzip("\x1f\x8bnot gzip at all", 5000));
}

}  // namespace
}  // namespace nudge::ingest
