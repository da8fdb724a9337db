#include "channel/channels_config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/yaml.h"

namespace nudge::channel {

Result<ChannelsConfig> ParseChannelsConfig(const core::YamlDoc& doc, const YAML::Node& channels,
                                           const ChannelsConfigContext& context) {
  ChannelsConfig c;
  if (channels.IsNull()) return c;
  if (!channels.IsMap())
    return Err(doc.ErrorAt(channels, "channels", "expected a mapping (email, sms, webhook)"));
  if (Status s = core::YamlKnownKeys(doc, channels, {"email", "sms", "webhook"}); !s.ok())
    return Err(core::YamlNamed(s, "channels"));
  auto getenv =
      context.getenv ? context.getenv : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
  if (const YAML::Node email = channels["email"]; email.IsDefined() && !email.IsNull()) {
    EmailConfigContext ec;
    ec.base_dir = context.base_dir;
    ec.getenv = getenv;
    NUDGE_ASSIGN_OR_RETURN(c.email, ParseEmailConfig(doc, email, ec));
  }
  if (const YAML::Node sms = channels["sms"]; sms.IsDefined() && !sms.IsNull()) {
    if (!sms.IsMap()) return Err(doc.ErrorAt(sms, "channels.sms", "expected a mapping"));
    if (Status s = core::YamlKnownKeys(doc, sms, {"gateway", "threads"}); !s.ok())
      return Err(core::YamlNamed(s, "channels.sms"));
    const YAML::Node g = sms["gateway"];
    if (!g.IsDefined() || !g.IsMap())
      return Err(doc.ErrorAt(g.IsDefined() ? g : sms, "channels.sms.gateway",
                             "is required: { url, account, token_env, from }"));
    if (Status s = core::YamlKnownKeys(doc, g, {"url", "account", "token_env", "from", "timeout"});
        !s.ok())
      return Err(core::YamlNamed(s, "channels.sms.gateway"));
    SmsConfig sc;
    auto required = [&](const char* key, std::string& out) -> Status {
      auto v = core::YamlString(doc, g, key);
      if (!v) return core::YamlNamed(v.error(), "channels.sms.gateway");
      if (!*v || (*v)->empty())
        return doc.ErrorAt(g, std::string("channels.sms.gateway.") + key, "is required");
      out = **v;
      return Status::Ok();
    };
    NUDGE_TRY(required("url", sc.url));
    if (sc.url.rfind("http://", 0) != 0 && sc.url.rfind("https://", 0) != 0)
      return Err(doc.ErrorAt(g["url"], "channels.sms.gateway.url", "expected an http(s) URL"));
    NUDGE_TRY(required("account", sc.account));
    NUDGE_TRY(required("from", sc.from));
    // A number in E.164, or an alphanumeric sender id (up to 11 letters and digits).
    const bool e164 = sc.from.size() >= 8 && sc.from.size() <= 16 && sc.from[0] == '+' &&
                      sc.from.find_first_not_of("0123456789", 1) == std::string::npos;
    const bool sender_id =
        sc.from.size() <= 11 && std::all_of(sc.from.begin(), sc.from.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch));
        });
    if (!e164 && !sender_id)
      return Err(doc.ErrorAt(g["from"], "channels.sms.gateway.from",
                             "expected a number in E.164 (+14155550100) or a sender id of up to "
                             "11 letters and digits, got '" +
                                 sc.from + "'"));
    std::string token_env;
    NUDGE_TRY(required("token_env", token_env));
    auto token = getenv(token_env);
    if (!token)
      return Err(doc.ErrorAt(g["token_env"], "channels.sms.gateway.token_env",
                             "the environment variable " + token_env + " is not set"));
    sc.token = *token;
    NUDGE_ASSIGN_OR_RETURN(auto timeout, core::YamlPrefixed(core::YamlDuration(doc, g, "timeout"),
                                                            "channels.sms.gateway"));
    if (timeout) sc.timeout = *timeout;
    NUDGE_ASSIGN_OR_RETURN(auto threads, core::YamlInt(doc, sms, "threads", "channels.sms", 1, 64));
    if (threads) sc.threads = *threads;
    c.sms = std::move(sc);
  }
  if (const YAML::Node w = channels["webhook"]; w.IsDefined() && !w.IsNull()) {
    if (!w.IsMap()) return Err(doc.ErrorAt(w, "channels.webhook", "expected a mapping"));
    if (Status s = core::YamlKnownKeys(doc, w, {"secret_env", "timeout", "threads"}); !s.ok())
      return Err(core::YamlNamed(s, "channels.webhook"));
    NUDGE_ASSIGN_OR_RETURN(
        auto secret_env,
        core::YamlPrefixed(core::YamlString(doc, w, "secret_env"), "channels.webhook"));
    if (secret_env) {
      auto secret = getenv(*secret_env);
      if (!secret)
        return Err(doc.ErrorAt(w["secret_env"], "channels.webhook.secret_env",
                               "the environment variable " + *secret_env + " is not set"));
      c.webhook.secret = *secret;
    }
    NUDGE_ASSIGN_OR_RETURN(auto timeout, core::YamlPrefixed(core::YamlDuration(doc, w, "timeout"),
                                                            "channels.webhook"));
    if (timeout) c.webhook.timeout = *timeout;
    NUDGE_ASSIGN_OR_RETURN(auto threads,
                           core::YamlInt(doc, w, "threads", "channels.webhook", 1, 64));
    if (threads) c.webhook.threads = *threads;
  }
  return c;
}

}  // namespace nudge::channel
