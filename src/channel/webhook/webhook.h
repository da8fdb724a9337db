// The webhook channel: a journey's `webhook` step POSTs (or PUTs, ...) its rendered body to its
// rendered URL with a signature the receiver can check:
//
//   X-Nudge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//   X-Nudge-Message-Id: <outbox message id>        (the same on every retry: deduplicate on it)
//
// The body goes as application/json when it parses as JSON, else as text/plain. Outcomes:
// 2xx sent; 408, 429, 5xx and network problems temporary (the pipeline retries with
// backoff); other statuses permanent. Thread-safe.
#pragma once

#include <string>

#include "channel/channel.h"
#include "channel/http_pool.h"

namespace nudge::channel {

struct WebhookConfig {
  std::string secret;  // from secret_env; empty: requests go unsigned
  int threads = 4;
  core::Millis timeout = 10'000;
};

class WebhookChannel final : public Channel {
 public:
  explicit WebhookChannel(WebhookConfig config);
  std::string_view name() const override { return "webhook"; }
  // out.webhook: {"url", "method", "headers": {...}, "body"} (rendered).
  Status Send(Outbound out, DeliveryCallback done) override;
  void Shutdown(core::Millis drain) override { pool_.Shutdown(drain); }

 private:
  WebhookConfig config_;
  HttpPool pool_;
};

// "t=<unix>,v1=<hex>" for body at unix_seconds.
std::string WebhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body);

}  // namespace nudge::channel
