#include "channel/email/config.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "channel/email/dkim.h"
#include "core/yaml.h"

namespace nudge::channel {

namespace {

Result<std::string> Required(const core::YamlDoc& doc, const YAML::Node& map, const char* key,
                             const std::string& path) {
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> v,
                         core::YamlPrefixed(core::YamlString(doc, map, key), path));
  if (!v || v->empty()) return Err(doc.ErrorAt(map, path + "." + key, "is required"));
  return *v;
}

std::string Resolve(const std::string& base_dir, const std::string& file) {
  if (file.empty() || base_dir.empty() || std::filesystem::path(file).is_absolute()) return file;
  return (std::filesystem::path(base_dir) / file).string();
}

Result<RelayConfig> ParseRelay(const core::YamlDoc& doc, const YAML::Node& node,
                               const std::string& path, const EmailConfigContext& context) {
  if (!node.IsMap())
    return Err(doc.ErrorAt(node, path, "expected a mapping such as { name, host, port, tls }"));
  if (Status s = core::YamlKnownKeys(
          doc, node,
          {"name", "host", "port", "tls", "pool", "rate", "username", "password_env", "auth",
           "tls_verify", "ca_file", "transactional_reserved"});
      !s.ok())
    return Err(core::YamlNamed(s, path));
  RelayConfig r;
  NUDGE_ASSIGN_OR_RETURN(r.name, Required(doc, node, "name", path));
  NUDGE_ASSIGN_OR_RETURN(r.host, Required(doc, node, "host", path));
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> tls,
                         core::YamlPrefixed(core::YamlString(doc, node, "tls"), path));
  if (!tls || *tls == "none") {
    r.tls = TlsMode::kNone;
    r.port = 25;
  } else if (*tls == "starttls") {
    r.tls = TlsMode::kStartTls;
    r.port = 587;
  } else if (*tls == "implicit") {
    r.tls = TlsMode::kImplicit;
    r.port = 465;
  } else {
    return Err(doc.ErrorAt(node["tls"], path + ".tls",
                           "expected none, starttls or implicit; got '" + *tls + "'"));
  }
  NUDGE_ASSIGN_OR_RETURN(std::optional<int> port, core::YamlInt(doc, node, "port", path, 1, 65535));
  if (port) r.port = *port;
  NUDGE_ASSIGN_OR_RETURN(std::optional<int> pool, core::YamlInt(doc, node, "pool", path, 1, 64));
  if (pool) r.pool = *pool;
  NUDGE_ASSIGN_OR_RETURN(std::optional<double> rate,
                         core::YamlPrefixed(core::YamlNumber(doc, node, "rate"), path));
  if (rate && *rate < 0)
    return Err(
        doc.ErrorAt(node["rate"], path + ".rate", "expected messages per second, 0 for no limit"));
  if (rate) r.rate = *rate;
  NUDGE_ASSIGN_OR_RETURN(std::optional<int> reserved,
                         core::YamlInt(doc, node, "transactional_reserved", path, 0, 63));
  if (reserved) {
    if (*reserved >= r.pool)
      return Err(doc.ErrorAt(node["transactional_reserved"], path + ".transactional_reserved",
                             "must be smaller than pool (" + std::to_string(r.pool) +
                                 "), so bulk mail keeps a connection"));
    r.transactional_reserved = *reserved;
  }
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> username,
                         core::YamlPrefixed(core::YamlString(doc, node, "username"), path));
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> password_env,
                         core::YamlPrefixed(core::YamlString(doc, node, "password_env"), path));
  if (password_env && !username)
    return Err(
        doc.ErrorAt(node["password_env"], path + ".password_env", "a password needs a username"));
  if (username) {
    r.username = *username;
    if (!password_env)
      return Err(doc.ErrorAt(node, path + ".password_env",
                             "is required with a username: the name of the environment variable "
                             "that holds the password"));
    std::optional<std::string> password;
    if (context.getenv) {
      password = context.getenv(*password_env);
    } else if (const char* v = std::getenv(password_env->c_str())) {
      password = std::string(v);
    }
    if (!password)
      return Err(doc.ErrorAt(node["password_env"], path + ".password_env",
                             "the environment variable " + *password_env + " is not set"));
    r.password = *password;
  }
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> auth,
                         core::YamlPrefixed(core::YamlString(doc, node, "auth"), path));
  if (auth) {
    if (*auth != "plain" && *auth != "login")
      return Err(doc.ErrorAt(node["auth"], path + ".auth",
                             "expected plain or login; got '" + *auth + "'"));
    if (!username) return Err(doc.ErrorAt(node["auth"], path + ".auth", "auth needs a username"));
    r.auth_mechanism = *auth;
  }
  NUDGE_ASSIGN_OR_RETURN(std::optional<bool> verify,
                         core::YamlPrefixed(core::YamlBool(doc, node, "tls_verify"), path));
  if (verify) r.tls_verify = *verify;
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> ca_file,
                         core::YamlPrefixed(core::YamlString(doc, node, "ca_file"), path));
  if (ca_file) r.ca_file = Resolve(context.base_dir, *ca_file);
  return r;
}

}  // namespace

SenderOptions EmailConfig::ToSenderOptions() const {
  SenderOptions o;
  o.relays = relays;
  o.domain_concurrency = domain_concurrency;
  o.helo_name = helo_name;
  return o;
}

Result<EmailConfig> ParseEmailConfig(const core::YamlDoc& doc, const YAML::Node& email,
                                     const EmailConfigContext& context) {
  const std::string& path = context.path;
  if (!email.IsMap()) return Err(doc.ErrorAt(email, path, "expected a mapping of keys"));
  if (Status s = core::YamlKnownKeys(
          doc, email,
          {"from", "postal_address", "relays", "dkim", "domain_concurrency", "helo_name"});
      !s.ok())
    return Err(core::YamlNamed(s, path));
  EmailConfig c;
  NUDGE_ASSIGN_OR_RETURN(std::string from, Required(doc, email, "from", path));
  auto mailbox = ParseMailbox(from);
  if (!mailbox) return Err(doc.ErrorAt(email["from"], path + ".from", mailbox.error().message()));
  c.from = std::move(*mailbox);
  NUDGE_ASSIGN_OR_RETURN(c.postal_address, Required(doc, email, "postal_address", path));

  const YAML::Node relays = email["relays"];
  if (!relays.IsDefined() || relays.IsNull())
    return Err(doc.ErrorAt(email, path + ".relays", "is required: at least one relay"));
  if (!relays.IsSequence() || relays.size() == 0)
    return Err(doc.ErrorAt(relays, path + ".relays", "expected a list of relays"));
  for (size_t i = 0; i < relays.size(); ++i) {
    const std::string relay_path = path + ".relays[" + std::to_string(i) + "]";
    NUDGE_ASSIGN_OR_RETURN(RelayConfig relay, ParseRelay(doc, relays[i], relay_path, context));
    for (const RelayConfig& earlier : c.relays)
      if (earlier.name == relay.name)
        return Err(doc.ErrorAt(relays[i]["name"], relay_path + ".name",
                               "the name '" + relay.name + "' is used by an earlier relay"));
    c.relays.push_back(std::move(relay));
  }

  const YAML::Node dkim = email["dkim"];
  if (dkim.IsDefined() && !dkim.IsNull()) {
    const std::string dkim_path = path + ".dkim";
    if (!dkim.IsMap())
      return Err(doc.ErrorAt(dkim, dkim_path, "expected { domain, selector, key_file }"));
    if (Status s = core::YamlKnownKeys(doc, dkim, {"domain", "selector", "key_file"}); !s.ok())
      return Err(core::YamlNamed(s, dkim_path));
    DkimConfig d;
    NUDGE_ASSIGN_OR_RETURN(d.domain, Required(doc, dkim, "domain", dkim_path));
    NUDGE_ASSIGN_OR_RETURN(d.selector, Required(doc, dkim, "selector", dkim_path));
    NUDGE_ASSIGN_OR_RETURN(std::string key_file, Required(doc, dkim, "key_file", dkim_path));
    d.key_file = Resolve(context.base_dir, key_file);
    // Read and checked now, so that a missing or malformed key stops the server at its
    // position rather than once the store is open.
    if (auto signer = DkimSigner::FromConfig(d); !signer)
      return Err(doc.ErrorAt(dkim["key_file"], dkim_path + ".key_file", signer.error().message()));
    c.dkim = std::move(d);
  }
  NUDGE_ASSIGN_OR_RETURN(std::optional<int> concurrency,
                         core::YamlInt(doc, email, "domain_concurrency", path, 0, 10000));
  if (concurrency) c.domain_concurrency = *concurrency;
  NUDGE_ASSIGN_OR_RETURN(std::optional<std::string> helo,
                         core::YamlPrefixed(core::YamlString(doc, email, "helo_name"), path));
  if (helo) c.helo_name = *helo;
  return c;
}

}  // namespace nudge::channel
