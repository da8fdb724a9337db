// The webhook channel's outcomes for requests that cannot succeed and ones that may later.
#include "channel/webhook/webhook.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>

namespace nudge::channel {
namespace {

DeliveryResult SendTo(const std::string& url) {
  WebhookChannel channel(WebhookConfig{"secret", 1, 2'000});
  Outbound out;
  out.message.id = 7;
  out.webhook = nlohmann::json{{"url", url}, {"method", "POST"}, {"body", "{}"}};
  std::mutex mu;
  std::condition_variable cv;
  std::optional<DeliveryResult> got;
  EXPECT_TRUE(channel
                  .Send(std::move(out),
                        [&](DeliveryResult r) {
                          std::lock_guard lock(mu);
                          got = std::move(r);
                          cv.notify_all();
                        })
                  .ok());
  std::unique_lock lock(mu);
  cv.wait_for(lock, std::chrono::seconds(10), [&] { return got.has_value(); });
  channel.Shutdown(1'000);
  if (got) return *got;
  DeliveryResult none;
  none.detail = "no callback";
  return none;
}

// A URL that can never be sent (a value with spaces and quotes put into it unencoded, another
// scheme) fails at once instead of being retried until the retries give up.
TEST(WebhookChannel, AMalformedUrlFailsForGoodANetworkProblemIsRetried) {
  for (const std::string url : {"http://127.0.0.1:9/crm?p=pro & \"co\"", "ftp://127.0.0.1:9/x"}) {
    const DeliveryResult r = SendTo(url);
    EXPECT_EQ(r.status, DeliveryStatus::kPermanent) << url << ": " << r.detail;
    EXPECT_NE(r.detail.find("url_encode"), std::string::npos) << r.detail;
  }
  // Nothing listens on port 9 of 127.0.0.1: refused, which may change.
  const DeliveryResult refused = SendTo("http://127.0.0.1:9/crm");
  EXPECT_EQ(refused.status, DeliveryStatus::kTemporary) << refused.detail;
}

}  // namespace
}  // namespace nudge::channel
