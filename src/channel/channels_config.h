// The `channels:` section of nudge.yaml: email (channel/email/config.h), sms and webhook.
//
//   channels:
//     email: { from, postal_address, relays: [...], dkim: {...} }
//     sms:
//       gateway: { url: "http://127.0.0.1:9001/2010-04-01/Accounts/AC1/Messages.json",
//                  account: AC1, token_env: NUDGE_SMS_TOKEN, from: "+15550001111" }
//     webhook: { secret_env: NUDGE_WEBHOOK_SECRET, timeout: 10s }
//
// A channel that is not configured is not registered: messages for it fail with "the sms
// channel is not configured". Errors name the key ("channels.sms.gateway.url: ...") and the
// position. Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "channel/email/config.h"
#include "channel/sms/sms.h"
#include "channel/webhook/webhook.h"

namespace nudge::channel {

struct ChannelsConfig {
  std::optional<EmailConfig> email;
  std::optional<SmsConfig> sms;
  WebhookConfig webhook;  // always available; unsigned without a secret
};

struct ChannelsConfigContext {
  std::string base_dir;  // relative key files are read from here
  std::function<std::optional<std::string>(const std::string&)> getenv;  // default: process env
};

Result<ChannelsConfig> ParseChannelsConfig(const core::YamlDoc& doc, const YAML::Node& channels,
                                           const ChannelsConfigContext& context = {});

}  // namespace nudge::channel
