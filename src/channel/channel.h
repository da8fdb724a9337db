// Channel: the one interface messages leave nudge through (email, sms, webhook, ...), and the
// registry the delivery pipeline finds them in by name. A channel is handed a message that is
// already rendered, checked for consent and claimed; it sends it on its own I/O threads and
// reports exactly one DeliveryResult per Send.
//
// Adding a channel is one folder and one ChannelRegistry::Add call in the wiring; the pipeline
// never switches on channel names except to read a contact's address for it.
//
// Thread-safety: Send may be called from any thread and must not block for long; the callback
// runs on the channel's own threads and must be short. ChannelRegistry is filled before the
// pipeline starts and only read afterwards.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "content/template.h"
#include "core/clock.h"
#include "core/result.h"
#include "store/store.h"

namespace nudge::channel {

// A message ready to go: who to, what, and the links that belong in it.
struct Outbound {
  store::Message message;  // the outbox row (id, workspace, contact, journey, step, ...)
  std::string recipient;   // the address for this channel: an email address, an E.164 number
  content::RenderedMessage rendered;  // email and SMS channels
  nlohmann::json webhook;             // webhook channel: url, method, headers, body (rendered)
  bool transactional = false;
  std::string topic;
  // Email: the stable Message-ID ("<id>.<queued-at>.<ws>.nudge@domain" without brackets), the
  // one-click unsubscribe URL (RFC 8058 POST target and the https List-Unsubscribe), its mailto:
  // form.
  std::string message_id_header;
  std::string unsubscribe_url;
  std::string unsubscribe_mailto;
  std::string preferences_url;
  std::string feedback_id;
};

enum class DeliveryStatus {
  kSent,       // accepted by the relay, the gateway or the webhook's receiver
  kTemporary,  // try again later (4xx, timeouts, 5xx from a webhook receiver, 429)
  kPermanent,  // do not try again (5xx from a relay, 4xx from a gateway)
};

struct DeliveryResult {
  DeliveryStatus status = DeliveryStatus::kTemporary;
  int code = 0;          // SMTP reply code or HTTP status; 0 when there was none
  std::string detail;    // the relay's or receiver's answer, or what went wrong locally
  std::string provider;  // the relay's name, the gateway's message id (Twilio SID), ...
  // The address itself is bad (SMTP 5.1.x at RCPT, an invalid number): a hard bounce.
  bool bad_address = false;
  // The recipient told the provider to stop (Twilio 21610: replied STOP to its number): the
  // address is suppressed as unsubscribed.
  bool unsubscribed = false;
  int provider_code = 0;  // the provider's own error code (Twilio's 21211, ...); 0 when none
  // The connection broke after the message was written: it may have arrived.
  bool maybe_delivered = false;
};

using DeliveryCallback = std::function<void(DeliveryResult)>;

class Channel {
 public:
  virtual ~Channel() = default;
  virtual std::string_view name() const = 0;
  // Queues out for sending; done is called exactly once, later, from another thread (or from
  // this one for an immediate refusal). Errors returned here mean nothing was queued and done
  // will not be called: kUnavailable (queue full, shutting down) is retried by the caller.
  virtual Status Send(Outbound out, DeliveryCallback done) = 0;
  // Stops taking messages and lets queued ones finish for up to drain.
  virtual void Shutdown(core::Millis drain) = 0;
};

class ChannelRegistry {
 public:
  // kAlreadyExists when a channel of that name is registered.
  Status Add(std::unique_ptr<Channel> channel);
  Channel* Find(std::string_view name) const;
  std::vector<std::string> Names() const;
  void ShutdownAll(core::Millis drain);

 private:
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels_;
};

}  // namespace nudge::channel
