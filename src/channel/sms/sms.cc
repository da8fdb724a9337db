#include "channel/sms/sms.h"

#include <curl/curl.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/crypto.h"
#include "core/url.h"

namespace nudge::channel {

SmsChannel::SmsChannel(SmsConfig config)
    : config_(std::move(config)), pool_("sms", config_.threads) {}

Status SmsChannel::Send(Outbound out, DeliveryCallback done) {
  HttpRequest req;
  req.url = config_.url;
  req.basic_user = config_.account;
  req.basic_password = config_.token;
  req.timeout = config_.timeout;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
  req.body = "To=" + core::PercentEncode(out.recipient, /*space_as_plus=*/true) +
             "&From=" + core::PercentEncode(config_.from, /*space_as_plus=*/true) +
             "&Body=" + core::PercentEncode(out.rendered.body, /*space_as_plus=*/true);
  return pool_.Submit(std::move(req), [done = std::move(done)](HttpResponse resp) {
    DeliveryResult r;
    r.code = resp.status;
    const nlohmann::json body = nlohmann::json::parse(resp.body, nullptr, false);
    if (resp.status == 0) {
      r.status = DeliveryStatus::kTemporary;
      r.detail = "gateway unreachable: " + resp.error;
    } else if (resp.status >= 200 && resp.status < 300) {
      r.status = DeliveryStatus::kSent;
      if (body.is_object() && body.contains("sid") && body["sid"].is_string())
        r.provider = body["sid"].get<std::string>();
      r.detail = "accepted by the gateway";
    } else if (resp.status == 429 || resp.status >= 500) {
      r.status = DeliveryStatus::kTemporary;
      r.detail = "gateway answered " + std::to_string(resp.status);
    } else {
      r.status = DeliveryStatus::kPermanent;
      int code = 0;
      std::string message;
      if (body.is_object()) {
        if (body.contains("code") && body["code"].is_number_integer())
          code = body["code"].get<int>();
        if (body.contains("message") && body["message"].is_string())
          message = body["message"].get<std::string>();
      }
      r.detail = "gateway refused (" + std::to_string(resp.status) +
                 (code ? ", code " + std::to_string(code) : "") + ")" +
                 (message.empty() ? "" : ": " + message);
      // Twilio: 21211 invalid 'To', 21214 not a mobile number, 21614 not SMS-capable,
      // 21612 unreachable carrier route.
      r.bad_address = code == 21211 || code == 21214 || code == 21614 || code == 21612;
      r.provider_code = code;
      r.unsubscribed = code == 21610;
      if (r.unsubscribed) r.detail += " (the recipient replied STOP)";
    }
    done(std::move(r));
  });
}

SmsKeyword ClassifyReply(std::string_view body) {
  std::string word;
  for (char c : body) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '.' || c == '!') {
      if (!word.empty()) break;
      continue;
    }
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  for (const char* k :
       {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
    if (word == k) return SmsKeyword::kStop;
  for (const char* k : {"START", "YES", "UNSTOP", "OPTIN"})
    if (word == k) return SmsKeyword::kStart;
  if (word == "HELP" || word == "INFO") return SmsKeyword::kHelp;
  return SmsKeyword::kNone;
}

std::string TwilioSignature(std::string_view token, std::string_view url,
                            const std::map<std::string, std::string>& params) {
  std::string data(url);
  for (const auto& [k, v] : params) data += k + v;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha1(), token.data(), static_cast<int>(token.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return core::Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

}  // namespace nudge::channel
