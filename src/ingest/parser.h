// Parsing and validating Segment HTTP Tracking API request bodies (simdjson).
//
// ParseRequest turns the body of POST /v1/<endpoint> into Messages, or fails with a Status
// whose `where` names the offending field ("batch[2].userId"). A request is all or nothing:
// one invalid message in a batch rejects the batch, so a client never has half of it stored.
//
// CheckRequest makes the same checks without building the messages: the HTTP thread checks a
// request with it before acknowledging it, and the messages are built from the stored body
// when it is applied. A body that passes CheckRequest passes ParseRequest with the same limits.
//
// Timestamps follow the spec: with sentAt, timestamp = receivedAt - (sentAt - originalTimestamp)
// where originalTimestamp is the message's originalTimestamp or, failing that, its timestamp;
// without sentAt the message's timestamp is used as given; with neither, receivedAt.
//
// Thread-safety: ParseRequest is thread-safe (each thread keeps its own parser).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "ingest/message.h"

namespace nudge::ingest {

// The endpoint a body arrived at: one message type, or a batch of any.
enum class Endpoint { kIdentify, kTrack, kPage, kScreen, kGroup, kAlias, kBatch };
std::optional<Endpoint> EndpointFromPath(std::string_view path);  // "/v1/track" -> kTrack
std::string_view EndpointPath(Endpoint endpoint);                 // kTrack -> "/v1/track"

struct Limits {
  // Segment: 32 KB per call. A single call's body is held to it as sent; a batch's messages
  // are each measured as minified JSON.
  size_t max_message_bytes = 32 * 1024;
  size_t max_batch_bytes = 500 * 1024;  // Segment: 500 KB per batch request
  size_t max_id_bytes = 1024;           // userId, anonymousId, messageId, ...
};

struct ParsedRequest {
  std::vector<Message> messages;
  std::optional<std::string> write_key;  // from the body's "writeKey", if present
};

struct CheckedRequest {
  size_t messages = 0;                   // how many the body holds
  std::optional<std::string> write_key;  // from the body's "writeKey", if present
};

// Body limits for an endpoint (the caller checks the raw and decompressed sizes with it).
size_t MaxBodyBytes(Endpoint endpoint, const Limits& limits);

// Errors: kInvalidArgument (malformed JSON, wrong types, missing fields; `where` names the
// field), kTooLarge (a message past max_message_bytes; `where` names it).
Result<ParsedRequest> ParseRequest(Endpoint endpoint, std::string_view body, Millis received_at,
                                   const Limits& limits = {});
// The checks of ParseRequest, with the same errors; the messages are only counted.
Result<CheckedRequest> CheckRequest(Endpoint endpoint, std::string_view body,
                                    const Limits& limits = {});

}  // namespace nudge::ingest
