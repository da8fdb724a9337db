#include "ingest/parser.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/time.h"

namespace nudge::ingest {
namespace {

using nlohmann::json;

const Millis kNow = *core::ParseIso8601("2026-11-24T10:00:00Z");

Message ParseOne(Endpoint e, const std::string& body) {
  auto r = ParseRequest(e, body, kNow);
  EXPECT_TRUE(r) << (r ? "" : r.error().ToString());
  if (!r || r->messages.size() != 1) return {};
  return r->messages[0];
}

// ParseRequest's error, which CheckRequest (what the HTTP thread runs before acknowledging)
// must give too: a request it lets through must build.
Status ParseError(Endpoint e, const std::string& body) {
  auto r = ParseRequest(e, body, kNow);
  EXPECT_FALSE(r) << "expected an error for " << body;
  auto checked = CheckRequest(e, body);
  EXPECT_FALSE(checked) << "CheckRequest let through " << body;
  if (r || checked) return Status::Ok();
  EXPECT_EQ(checked.error().ToString(), r.error().ToString());
  return r.error();
}

TEST(Parser, TrackKeepsTheClientFieldsAndDropsTheWriteKey) {
  Message m = ParseOne(Endpoint::kTrack, R"({
    "userId": "u1", "event": "Order Completed", "messageId": "m-1", "writeKey": "secret",
    "properties": {"revenue": 42.5, "items": [1, 2]},
    "context": {"ip": "10.0.0.1", "userAgent": "curl", "campaign": {"source": "news"}}})");
  EXPECT_EQ(m.type, MessageType::kTrack);
  EXPECT_EQ(m.event, "Order Completed");
  EXPECT_EQ(m.message_id, "m-1");
  EXPECT_EQ(*m.user_id, "u1");
  EXPECT_FALSE(m.anonymous_id);
  EXPECT_EQ(m.timestamp, kNow);
  json body = json::parse(m.body);
  EXPECT_EQ(body["properties"]["revenue"], 42.5);
  EXPECT_EQ(body["context"]["campaign"]["source"], "news");
  EXPECT_EQ(body["context"]["ip"], "10.0.0.1");
  EXPECT_EQ(body["receivedAt"], "2026-11-24T10:00:00.000Z");
  EXPECT_FALSE(body.contains("writeKey"));
}

TEST(Parser, WriteKeyInTheBodyIsReturned) {
  auto r = ParseRequest(Endpoint::kTrack, R"({"writeKey":"wk","userId":"u","event":"E"})", kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->write_key, "wk");
}

TEST(Parser, NumericIdsBecomeStringsAndMissingMessageIdsAreMinted) {
  Message m = ParseOne(Endpoint::kIdentify, R"({"userId": 12345, "traits": {"plan": "pro"}})");
  EXPECT_EQ(*m.user_id, "12345");
  EXPECT_EQ(m.message_id.size(), 36u);
  EXPECT_EQ(json::parse(m.traits)["plan"], "pro");
}

TEST(Parser, MissingFieldsAreNamed) {
  EXPECT_EQ(ParseError(Endpoint::kTrack, R"({"event":"E"})").where(), "userId");
  EXPECT_EQ(ParseError(Endpoint::kTrack, R"({"userId":"u"})").where(), "event");
  EXPECT_EQ(ParseError(Endpoint::kTrack, R"({"userId":"u","event":""})").where(), "event");
  EXPECT_EQ(ParseError(Endpoint::kAlias, R"({"userId":"u"})").where(), "previousId");
  EXPECT_EQ(ParseError(Endpoint::kGroup, R"({"userId":"u"})").where(), "groupId");
  EXPECT_EQ(ParseError(Endpoint::kTrack, R"({"userId":"u","event":"E","properties":[]})").where(),
            "properties");
  EXPECT_EQ(ParseError(Endpoint::kTrack, R"({"userId":true,"event":"E"})").where(), "userId");
  Status s = ParseError(Endpoint::kTrack, R"({"userId":"u","event":"E","timestamp":"noon"})");
  EXPECT_EQ(s.where(), "timestamp");
  EXPECT_NE(s.message().find("ISO-8601"), std::string::npos);
}

TEST(Parser, MalformedJsonSaysLineAndColumn) {
  Status s = ParseError(Endpoint::kTrack, "{\n  \"userId\": \"u\",\n  \"event\": tru\n}");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.where(), "3:14") << s.ToString();
  EXPECT_EQ(ParseError(Endpoint::kTrack, "[1,2]").where(), "body");
  EXPECT_EQ(ParseError(Endpoint::kTrack, "").code(), Code::kInvalidArgument);
}

TEST(Parser, ABadMessageRejectsTheWholeBatchAndIsNamed) {
  Status s = ParseError(Endpoint::kBatch, R"({"batch":[
      {"type":"track","userId":"u","event":"A"},
      {"type":"track","event":"B"}]})");
  EXPECT_EQ(s.where(), "batch[1].userId");
  EXPECT_EQ(ParseError(Endpoint::kBatch, R"({"batch":[{"userId":"u"}]})").where(), "batch[0].type");
  EXPECT_EQ(ParseError(Endpoint::kBatch, R"({"batch":[{"type":"shout","userId":"u"}]})").where(),
            "batch[0].type");
  EXPECT_EQ(ParseError(Endpoint::kBatch, R"({"batch":{}})").where(), "batch");
  EXPECT_EQ(ParseError(Endpoint::kBatch, R"({"batch":[7]})").where(), "batch[0]");
}

TEST(Parser, ClockSkewIsCorrectedWithSentAt) {
  // The device clock is an hour behind; it sent 5 s after the event happened.
  Message m = ParseOne(Endpoint::kTrack, R"({"anonymousId":"a","event":"E",
      "originalTimestamp":"2026-11-24T08:59:50Z","sentAt":"2026-11-24T08:59:55Z"})");
  EXPECT_EQ(m.timestamp, kNow - 5000);
  EXPECT_EQ(json::parse(m.body)["originalTimestamp"], "2026-11-24T08:59:50.000Z");

  // A historical import: a timestamp without sentAt is taken as given.
  m = ParseOne(Endpoint::kTrack,
               R"({"userId":"u","event":"E","timestamp":"2025-01-01T00:00:00Z"})");
  EXPECT_EQ(m.timestamp, *core::ParseIso8601("2025-01-01T00:00:00Z"));

  // The batch's sentAt applies to its messages.
  auto r = ParseRequest(Endpoint::kBatch, R"({"sentAt":"2026-11-24T09:00:10Z","batch":[
      {"type":"track","userId":"u","event":"E","timestamp":"2026-11-24T09:00:00Z"}]})",
                        kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->messages[0].timestamp, kNow - 10000);
}

TEST(Parser, PageViewsCarryTheirPathAsProperties) {
  Message m = ParseOne(Endpoint::kPage, R"({"anonymousId":"a","name":"Pricing",
      "context":{"page":{"path":"/pricing","url":"https://acme.test/pricing","title":"Pricing"}},
      "properties":{"title":"Plans"}})");
  EXPECT_EQ(m.event, "Page Viewed");
  json p = json::parse(m.body)["properties"];
  EXPECT_EQ(p["path"], "/pricing");
  EXPECT_EQ(p["title"], "Plans");  // the call's own property wins over context.page
  EXPECT_EQ(p["name"], "Pricing");
}

TEST(Parser, BatchContextIsInheritedByMessagesWithout) {
  auto r = ParseRequest(Endpoint::kBatch, R"({"context":{"library":{"name":"x"}},"batch":[
      {"type":"identify","userId":"u","traits":{"email":"a@b.c"}},
      {"type":"track","userId":"u","event":"E","context":{"ip":"1.2.3.4"}}]})",
                        kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->messages[0].body)["context"]["library"]["name"], "x");
  EXPECT_FALSE(json::parse(r->messages[1].body)["context"].contains("library"));
}

TEST(Parser, OversizedMessagesInABatchAreRefused) {
  std::string big(40000, 'x');
  auto r =
      ParseRequest(Endpoint::kBatch,
                   R"({"batch":[{"type":"track","userId":"u","event":"E","properties":{"p":")" +
                       big + R"("}}]})",
                   kNow);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kTooLarge);
  EXPECT_EQ(r.error().where(), "batch[0]");
  EXPECT_EQ(CheckRequest(Endpoint::kBatch, R"({"batch":[{"type":"track","userId":"u","event":"E",)"
                                           R"("properties":{"p":")" +
                                               big + R"("}}]})")
                .error()
                .where(),
            "batch[0]");
}

TEST(Parser, CheckRequestCountsWhatParseRequestBuilds) {
  const std::string batch = R"({"writeKey":"wk","context":{"ip":"1.2.3.4"},"batch":[
      {"type":"identify","userId":"u","traits":{"email":"a@b.c"}},
      {"type":"page","anonymousId":"a","name":"Home"},
      {"type":"track","userId":"u","event":"E","properties":{"x":[1,2.5,"\n",null,true]}}]})";
  auto checked = CheckRequest(Endpoint::kBatch, batch);
  ASSERT_TRUE(checked) << checked.error().ToString();
  EXPECT_EQ(checked->messages, 3u);
  EXPECT_EQ(*checked->write_key, "wk");
  EXPECT_EQ(ParseRequest(Endpoint::kBatch, batch, kNow)->messages.size(), 3u);
  EXPECT_EQ(CheckRequest(Endpoint::kBatch, R"({"batch":[]})")->messages, 0u);
}

TEST(Parser, TheMessageLimitIsOnTheMinifiedMessage) {
  // {"type":"track","userId":"u","event":"E","properties":{"p":"…"}} is 63 bytes besides the
  // string; whitespace between tokens does not count.
  const size_t limit = Limits{}.max_message_bytes;
  auto body = [](size_t fill) {
    return R"({"batch":[ {"type": "track", "userId": "u", "event": "E", "properties": {"p": ")" +
           std::string(fill, 'x') + R"("}} ]})";
  };
  for (size_t fill : {limit - 63, limit - 62}) {
    const bool fits = fill + 63 <= limit;
    auto parsed = ParseRequest(Endpoint::kBatch, body(fill), kNow);
    auto checked = CheckRequest(Endpoint::kBatch, body(fill));
    EXPECT_EQ(bool(parsed), fits) << fill;
    EXPECT_EQ(bool(checked), fits) << fill;
    if (!fits) {
      EXPECT_EQ(checked.error().code(), Code::kTooLarge);
    }
  }
}

TEST(Parser, EndpointsFromPaths) {
  EXPECT_EQ(EndpointFromPath("/v1/track"), Endpoint::kTrack);
  EXPECT_EQ(EndpointFromPath("/v1/batch/"), Endpoint::kBatch);
  EXPECT_FALSE(EndpointFromPath("/v1/nope"));
}

}  // namespace
}  // namespace nudge::ingest
