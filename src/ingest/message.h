// Message: one Segment Tracking API call (identify, track, page, screen, group, alias) after
// parsing and validation, ready to be applied to a contact.
//
// The Segment spec: https://segment.com/docs/connections/spec/ . Field names below are the
// spec's; `body` is what nudge stores and gives back: the message as sent, minus the write
// key, with the server's fields (messageId when missing, timestamp, receivedAt) filled in.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"

namespace nudge::ingest {

using core::Millis;

enum class MessageType { kIdentify, kTrack, kPage, kScreen, kGroup, kAlias };

// "identify", "track", ... as the spec spells them (and as they are stored).
std::string_view MessageTypeName(MessageType type);
std::optional<MessageType> ParseMessageType(std::string_view name);

// The event names page and screen calls are stored under, so that conditions and journeys
// can say `event "Page Viewed"` exactly as they say `event "Order Completed"`.
inline constexpr std::string_view kPageViewed = "Page Viewed";
inline constexpr std::string_view kScreenViewed = "Screen Viewed";

struct Message {
  MessageType type = MessageType::kTrack;
  std::string message_id;
  std::optional<std::string> user_id;
  std::optional<std::string> anonymous_id;
  std::string event;        // track: the event; page/screen: kPageViewed/kScreenViewed
  std::string previous_id;  // alias only
  std::string group_id;     // group only
  std::string traits;       // identify/group: the traits object as JSON text, else empty
  Millis timestamp = 0;     // when it happened, corrected for client clock skew
  Millis received_at = 0;
  std::string body;  // JSON object text, as stored
};

}  // namespace nudge::ingest
