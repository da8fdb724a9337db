#include "channel/webhook/webhook.h"

#include <strings.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/crypto.h"
#include "journey/definition.h"

namespace nudge::channel {

WebhookChannel::WebhookChannel(WebhookConfig config)
    : config_(std::move(config)), pool_("webhook", config_.threads) {}

std::string WebhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  return "t=" + t + ",v1=" + core::HexEncode(core::HmacSha256(secret, t + "." + std::string(body)));
}

Status WebhookChannel::Send(Outbound out, DeliveryCallback done) {
  const nlohmann::json& w = out.webhook;
  HttpRequest req;
  req.url = w.value("url", "");
  req.method = w.value("method", "POST");
  req.body = w.value("body", "");
  req.timeout = config_.timeout;
  // The step's headers, but never one nudge sets itself (journeys refuse them; a definition
  // stored before that is filtered here). A Content-Type of the step's replaces the default.
  bool own_type = false;
  if (w.contains("headers") && w["headers"].is_object()) {
    for (const auto& [k, v] : w["headers"].items()) {
      if (!v.is_string() || !journey::IsHttpHeaderName(k) || journey::IsReservedWebhookHeader(k))
        continue;
      own_type = own_type || strcasecmp(k.c_str(), "Content-Type") == 0;
      req.headers.emplace_back(k, v.get<std::string>());
    }
  }
  if (!own_type)
    req.headers.emplace_back("Content-Type", nlohmann::json::accept(req.body)
                                                 ? "application/json"
                                                 : "text/plain; charset=utf-8");
  req.headers.emplace_back("X-Nudge-Message-Id", std::to_string(out.message.id));
  if (!config_.secret.empty()) {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    req.headers.emplace_back("X-Nudge-Signature", WebhookSignature(config_.secret, now, req.body));
  }
  return pool_.Submit(std::move(req), [done = std::move(done)](HttpResponse resp) {
    DeliveryResult r;
    r.code = resp.status;
    if (resp.status == 0 && resp.malformed) {
      r.status = DeliveryStatus::kPermanent;
      r.detail = "the request cannot be sent (" + resp.error +
                 "); a value put into the URL may need | url_encode";
    } else if (resp.status == 0) {
      r.status = DeliveryStatus::kTemporary;
      r.detail = "no answer: " + resp.error;
    } else if (resp.status >= 200 && resp.status < 300) {
      r.status = DeliveryStatus::kSent;
      r.detail = "answered " + std::to_string(resp.status);
    } else if (resp.status == 408 || resp.status == 429 || resp.status >= 500) {
      r.status = DeliveryStatus::kTemporary;
      r.detail = "answered " + std::to_string(resp.status);
    } else {
      r.status = DeliveryStatus::kPermanent;
      r.detail = "answered " + std::to_string(resp.status);
    }
    if (!resp.body.empty() && r.status != DeliveryStatus::kSent)
      r.detail += ": " + resp.body.substr(0, 200);
    done(std::move(r));
  });
}

}  // namespace nudge::channel
