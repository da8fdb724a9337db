// Configuration of `nudge serve`: defaults, then nudge.yaml, then NUDGE_* environment
// variables, then command-line flags, each overriding the one before. docs/configuration.md
// lists every setting.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "channel/channels_config.h"
#include "channel/delivery.h"
#include "core/result.h"

namespace nudge::app {

struct Config {
  std::string listen = "127.0.0.1:8080";
  std::string data = "./data";
  int http_threads = 2;
  std::string default_region = "US";
  std::string log_level = "info";
  std::optional<std::string> write_key;  // of the default workspace
  std::optional<std::string> admin_key;
  size_t max_message_bytes = 32 * 1024;
  size_t max_batch_bytes = 500 * 1024;
  // Events acknowledged and not yet applied before /v1/* answers 503 (limits.max_backlog_events).
  size_t max_backlog_events = 262144;
  // Bytes of those requests' bodies held in memory before /v1/* answers 503
  // (limits.max_backlog_bytes).
  size_t max_backlog_bytes = 256 << 20;
  // The base of tracking, unsubscribe and image links in messages; default: http://<listen>.
  std::string public_url;
  // delivery.hold / NUDGE_DELIVERY_HOLD: messages stay `queued` and nothing is sent (rehearsing
  // journeys on a live server, or a server whose channels are not set up yet).
  bool delivery_hold = false;
  channel::ChannelsConfig channels;
  // delivery: { workers, batch, poll, retry: { initial, max, attempts, give_up_after },
  //             track_opens, track_clicks, unsubscribe_mailbox }
  channel::DeliveryOptions delivery;
  // feedback: bounces and complaints by mail: an SMTP listener and/or a maildir to read.
  std::string feedback_listen;   // "127.0.0.1:2526"; empty: none
  std::string feedback_maildir;  // a maildir's root; empty: none
  core::Millis feedback_poll = 10'000;
};

// What the command line said; unset fields leave the lower layers' values.
struct Flags {
  std::optional<std::string> config;
  std::optional<std::string> listen;
  std::optional<std::string> data;
};

// Reads nudge.yaml (flags.config, else NUDGE_CONFIG, else none), the environment (`env`,
// normally the process's) and the flags. Errors name the file, line:column and key, or the
// variable, and what was expected; unknown keys are errors (a typo must not pass silently).
Result<Config> LoadConfig(const Flags& flags, const std::map<std::string, std::string>& env);

// The process environment's NUDGE_* variables.
std::map<std::string, std::string> NudgeEnvironment();

}  // namespace nudge::app
