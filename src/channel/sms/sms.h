// The SMS channel: messages go to an HTTP gateway that speaks Twilio's Messages API
// (POST <url> with To, From, Body as a form, Basic auth account:token; 201 with {"sid": ...}).
// The URL is configurable, so any compatible gateway (or a local test receiver) works.
//
// Outcomes: 2xx sent (provider = the sid); 429, 5xx and network problems temporary; other 4xx
// permanent, with Twilio's error codes for a bad number (21211, 21614, ...) marked as a bad
// address and 21610 (the recipient replied STOP) reported as such.
//
// Inbound messages (replies) arrive at nudge's /hooks/sms/inbound; ParseInbound and
// VerifyTwilioSignature serve that route. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "channel/channel.h"
#include "channel/http_pool.h"

namespace nudge::channel {

struct SmsConfig {
  std::string url;      // the Messages endpoint
  std::string account;  // Basic auth user (Twilio's Account SID)
  std::string token;    // Basic auth password (from token_env)
  std::string from;     // E.164 sender number or a messaging service id
  int threads = 4;
  core::Millis timeout = 10'000;
};

class SmsChannel final : public Channel {
 public:
  explicit SmsChannel(SmsConfig config);
  std::string_view name() const override { return "sms"; }
  Status Send(Outbound out, DeliveryCallback done) override;
  void Shutdown(core::Millis drain) override { pool_.Shutdown(drain); }

 private:
  SmsConfig config_;
  HttpPool pool_;
};

// What a person texted back: STOP-like keywords unsubscribe, START-like ones subscribe again
// (the keywords carriers and Twilio honour), HELP asks for help.
enum class SmsKeyword { kNone, kStop, kStart, kHelp };
SmsKeyword ClassifyReply(std::string_view body);

// Twilio's request signature (X-Twilio-Signature): base64(HMAC-SHA1(token, url + each POST
// parameter's name and value, sorted by name)).
std::string TwilioSignature(std::string_view token, std::string_view url,
                            const std::map<std::string, std::string>& params);

}  // namespace nudge::channel
