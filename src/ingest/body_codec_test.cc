#include "ingest/body_codec.h"

#include <gtest/gtest.h>

#include <string>

namespace nudge::ingest {
namespace {

std::string JsonBatch(int n) {
  std::string body = R"({"batch":[)";
  for (int i = 0; i < n; ++i) {
    if (i > 0) body += ',';
    body +=
        R"({"type":"track","event":"Order Completed","userId":"user-)" + std::to_string(i) +
        R"(","properties":{"order_id":"ord-)" + std::to_string(7919 * i) +
        R"(","total":764.09,"currency":"USD"},"context":{"userAgent":"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"}})";
  }
  return body + "]}";
}

TEST(BodyCodecTest, ABatchComesBackByteForByteAndSmaller) {
  const std::string body = JsonBatch(20);
  const std::string frame = CompressBody(body);
  EXPECT_LT(frame.size() * 4, body.size()) << "JSON batches shrink at least 4x";
  auto back = DecompressBody(frame, body.size());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, body);
  auto empty = DecompressBody(CompressBody(""), 10);
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, "");
}

TEST(BodyCodecTest, CorruptOrTruncatedFramesAreErrorsNotCrashes) {
  const std::string frame = CompressBody(JsonBatch(20));
  for (size_t cut : {size_t{0}, size_t{3}, frame.size() / 2, frame.size() - 1}) {
    auto r = DecompressBody(frame.substr(0, cut), 1 << 20);
    ASSERT_FALSE(r) << "cut at " << cut;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
  std::string flipped = frame;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5a);
  auto r = DecompressBody(flipped, 1 << 20);
  ASSERT_FALSE(r) << "a damaged frame fails its checksum";
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  auto text = DecompressBody(JsonBatch(1), 1 << 20);
  ASSERT_FALSE(text) << "a body kept as text is not a frame";
}

TEST(BodyCodecTest, AFrameSayingItHoldsMoreThanTheLimitIsTooLarge) {
  const std::string body(600 * 1024, 'a');  // compresses to almost nothing
  auto r = DecompressBody(CompressBody(body), 500 * 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kTooLarge);
}

}  // namespace
}  // namespace nudge::ingest
