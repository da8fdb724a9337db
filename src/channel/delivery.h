// Dispatcher: the delivery pipeline. It takes due messages from the outbox (written by journeys
// in the same commit as the event that caused them), checks them at send time, renders them,
// and hands them to their channel; each outcome is written back to the message and recorded as
// an event on the contact, so journeys can wait for it and analytics can count it.
//
//   outbox (queued, send_at <= now)
//     → checks: the contact still exists and has an address for the channel; not suppressed;
//       subscribed to the channel and the template's topic (transactional templates skip
//       consent); outside quiet hours (else deferred_quiet_hours until they end); under the
//       frequency cap (else capped)
//     → claim (sending, attempt + 1, Message-ID and recipient recorded)
//     → render (Liquid: contact, event, journey, message, workspace), links rewritten through
//       signed click redirects, the open pixel, the footer and unsubscribe headers
//     → channel.Send → sent | temporary (queued again after a backoff, failed after the last
//       attempt) | permanent (failed; a refused address is suppressed as a hard bounce)
//     → events: "Email Sent", "SMS Sent", "Webhook Sent", "Email Bounced", "Email Failed", ...
//       with message_id, journey, step, template and channel in their properties.
//
// A message is marked sent only after the relay's 250. A crash while it is `sending` leaves it
// there; Start() puts such messages back in the queue and they go out again with the same
// Message-ID: the only place a duplicate can come from.
//
// Threads: "delivery" picks, checks and claims; "deliver-N" workers render and hand messages to
// the channels; outcomes come back on the channels' threads and are written in batches by the
// delivery thread. All public methods are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "channel/channel.h"
#include "content/library.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "core/result.h"
#include "journey/engine.h"
#include "segment/engine.h"
#include "store/store.h"
#include "track/links.h"

namespace nudge::channel {

struct DeliveryOptions {
  std::string public_url = "http://127.0.0.1:8080";  // base of tracking and unsubscribe links
  // The mailbox of the mailto: List-Unsubscribe (the inbound listener reads it); empty: only the
  // https form is given.
  std::string unsubscribe_mailbox;
  std::string message_id_domain;        // the right-hand side of Message-IDs (the From domain)
  int batch = 256;                      // messages picked per round
  int workers = 2;                      // render and compose threads
  core::Millis poll = 1'000;            // look for due messages at least this often
  size_t max_in_flight = 20'000;        // messages handed to channels and not yet answered
  core::Millis retry_initial = 60'000;  // after the first temporary failure
  double retry_multiplier = 2.0;
  core::Millis retry_max = 4 * 3'600'000LL;
  int max_attempts = 8;                           // attempts in all
  core::Millis give_up_after = 3 * 86'400'000LL;  // since the message was queued
  bool track_opens = true;
  bool track_clicks = true;
  bool background = true;  // false: no threads; tests call RunOnce
  // Tests only: runs in a pick after its read found the due messages and before it looks at
  // them, so a test can settle a message the pick's snapshot still shows as due.
  std::function<void()> after_due_read;
};

struct DeliveryDeps {
  store::Store& store;
  segment::Engine& segments;
  journey::Engine& journeys;
  content::TemplateLibrary& templates;
  track::SecretBook& secrets;
  ChannelRegistry& channels;
  const core::Clock& clock;
  core::MetricsRegistry* metrics = nullptr;
};

class Dispatcher {
 public:
  Dispatcher(DeliveryDeps deps, DeliveryOptions options);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Re-queues messages a crash left in `sending`, then starts the threads (background).
  Status Start();
  // New messages are queued (journeys call it after their commit).
  void Notify();
  // Stops picking messages; waits up to drain for answers to those in flight; their outcomes
  // are written. What is still unanswered stays `sending` and goes again on the next start.
  void Stop(core::Millis drain);

  // One round without threads: picks what is due now, checks, claims, renders and sends, then
  // waits (up to `wait`) for the channels' answers and writes them. Returns how many messages
  // it handled. For tests on a virtual clock.
  Result<int> RunOnce(core::Millis wait = 5'000);

  // The Liquid context a template sees for this contact (and message, when given): contact,
  // event, journey, message, workspace.
  Result<nlohmann::json> ContextFor(store::WorkspaceId ws, store::ContactId contact,
                                    const store::Message* message);
  // Renders a template as delivery would (without tracking links or footer), for previews.
  Result<content::RenderedMessage> Render(store::WorkspaceId ws, const std::string& template_id,
                                          const nlohmann::json& context);
  // The HTML of a sent message as its recipient saw it (the "view in browser" link).
  Result<std::string> BrowserView(int64_t message_id);

  size_t InFlight() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The stable Message-ID (without brackets) of an outbox message, on the sender's domain.
std::string MessageIdHeader(const store::Message& message, std::string_view domain);
// "Email", "SMS", "Webhook", "Push": how a channel's events are named ("Email Sent").
std::string ChannelEventPrefix(std::string_view channel);

}  // namespace nudge::channel
