// libFuzzer target: the Segment request parser (every endpoint) and the gzip inflater over
// arbitrary bytes. Besides the sanitizers' findings it checks what the rest of nudge relies on:
// CheckRequest (run before a request is acknowledged) accepts exactly what ParseRequest (run
// when it is applied) accepts, with the same error and message count; an accepted
// single-message call holds one message; every stored body is a JSON object.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ingest/gzip.h"
#include "ingest/parser.h"

namespace {

using nudge::ingest::Endpoint;

constexpr nudge::core::Millis kReceivedAt = 1'795'514'400'123;  // 2026-11-24T10:00:00.123Z

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void ParseAll(std::string_view body) {
  static constexpr Endpoint kEndpoints[] = {Endpoint::kIdentify, Endpoint::kTrack, Endpoint::kPage,
                                            Endpoint::kScreen,   Endpoint::kGroup, Endpoint::kAlias,
                                            Endpoint::kBatch};
  // Small limits too, so the size checks run on inputs the fuzzer can reach.
  const nudge::ingest::Limits small{
      .max_message_bytes = 256, .max_batch_bytes = 1024, .max_id_bytes = 16};
  for (Endpoint endpoint : kEndpoints) {
    for (const auto& limits : {nudge::ingest::Limits{}, small}) {
      auto parsed = nudge::ingest::ParseRequest(endpoint, body, kReceivedAt, limits);
      auto checked = nudge::ingest::CheckRequest(endpoint, body, limits);
      Check(bool(parsed) == bool(checked));
      if (!parsed) {
        Check(!parsed.error().ok() && !parsed.error().message().empty());
        Check(parsed.error().ToString() == checked.error().ToString());
        continue;
      }
      Check(checked->messages == parsed->messages.size());
      Check(checked->write_key == parsed->write_key);
      if (endpoint != Endpoint::kBatch) Check(parsed->messages.size() == 1);
      for (const auto& m : parsed->messages) {
        simdjson::dom::parser parser;
        simdjson::dom::element root;
        Check(parser.parse(m.body).get(root) == simdjson::SUCCESS);
        Check(root.type() == simdjson::dom::element_type::OBJECT);
        Check(!m.message_id.empty());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  ParseAll(input);
  constexpr size_t kMaxOutput = 64 * 1024;
  auto inflated = nudge::ingest::Gunzip(input, kMaxOutput);
  if (inflated) {
    Check(inflated->size() <= kMaxOutput);
    ParseAll(*inflated);
  }
  return 0;
}
