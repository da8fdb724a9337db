#include "app/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/yaml.h"
#include "http/server.h"
#include "profile/normalize.h"

extern char** environ;

namespace nudge::app {
namespace {

std::string Where(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

Result<int> ParseInt(const std::string& text, const std::string& where, int min, int max) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < min || v > max)
    return Err(Status::Invalid("expected a whole number from " + std::to_string(min) + " to " +
                                   std::to_string(max) + ", got '" + text + "'",
                               where));
  return static_cast<int>(v);
}

// A key is sent as written in headers (Basic user name, Bearer token), where spaces at its
// ends are trimmed and a ':' ends the user name: such a key could be set and never used.
Status CheckKey(const std::string& key, bool write_key, const std::string& where) {
  if (key.empty()) return Status::Invalid("a key may not be empty", where);
  for (char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F)
      return Status::Invalid("a key has printable ASCII characters only, no spaces", where);
    if (write_key && c == ':')
      return Status::Invalid("a write key may not hold ':' (it is the Basic user name)", where);
  }
  return Status::Ok();
}

Status CheckLogLevel(const std::string& level, const std::string& where) {
  static const std::set<std::string> kLevels{"trace", "debug", "info", "warn", "error", "off"};
  if (!kLevels.count(level))
    return Status::Invalid(
        "expected one of trace, debug, info, warn, error, off; got '" + level + "'", where);
  return Status::Ok();
}

Status CheckPublicUrl(const std::string& url, const std::string& where) {
  const std::string expected =
      "expected an http(s) URL such as https://nudge.acme.test, got '" + url + "'";
  const size_t scheme = url.rfind("http://", 0) == 0 ? 7 : url.rfind("https://", 0) == 0 ? 8 : 0;
  if (scheme == 0) return Status::Invalid(expected, where);
  // Every link in every message starts with it: a host, and nothing a link cannot hold.
  if (url.size() == scheme || url[scheme] == '/' || url[scheme] == ':')
    return Status::Invalid("no host; " + expected, where);
  if (url.find_first_of(" \t\r\n\"'<>\\") != std::string::npos)
    return Status::Invalid("a space, quote or bracket cannot go in a link; " + expected, where);
  return Status::Ok();
}

// host:port with the host an IP address ([...] for IPv6), as the server binds it; checked
// here so that a bad one stops the server before it opens anything. `empty_host`: a feedback
// listener may leave the host out (every interface).
Status CheckListen(const std::string& listen, const std::string& where, bool empty_host = false) {
  const std::string expected =
      "expected IP:PORT such as 127.0.0.1:8080, 0.0.0.0:8080 (every interface) or [::1]:8080, "
      "got '" +
      listen + "'";
  auto hp = http::ParseListen(listen);
  if (!hp) return Status::Invalid(hp.error().message() + " (" + expected + ")", where);
  const std::string& host = hp->first;
  if (host.empty()) return empty_host ? Status::Ok() : Status::Invalid(expected, where);
  in_addr v4{};
  in6_addr v6{};
  const bool bracketed = listen.front() == '[';
  if ((!bracketed && inet_pton(AF_INET, host.c_str(), &v4) == 1) ||
      (bracketed && inet_pton(AF_INET6, host.c_str(), &v6) == 1))
    return Status::Ok();
  if (!bracketed && host.find(':') != std::string::npos)
    return Status::Invalid("an IPv6 address goes in brackets; " + expected, where);
  return Status::Invalid("the host must be an IP address, not a name; " + expected, where);
}

// An on/off variable: 1, true, yes or 0, false, no.
Result<bool> ParseSwitch(const std::string& value, const std::string& where) {
  if (value == "1" || value == "true" || value == "yes") return true;
  if (value == "0" || value == "false" || value == "no") return false;
  return Err(Status::Invalid("expected 1, 0, true, false, yes or no, got '" + value + "'", where));
}

Status CheckRegion(const std::string& region, const std::string& where) {
  if (!profile::IsPhoneRegion(region))
    return Status::Invalid(
        "expected a two-letter country code such as US or DE, got '" + region + "'", where);
  return Status::Ok();
}

Status ApplyDelivery(const core::YamlDoc& doc, const YAML::Node& node, Config& c) {
  if (!node.IsMap()) return doc.ErrorAt(node, "delivery", "expected a mapping");
  NUDGE_TRY(core::YamlKnownKeys(doc, node,
                                {"workers", "batch", "poll", "retry", "track_opens", "track_clicks",
                                 "unsubscribe_mailbox", "hold"}));
  channel::DeliveryOptions& d = c.delivery;
  NUDGE_ASSIGN_OR_RETURN(auto workers, core::YamlInt(doc, node, "workers", "delivery", 1, 64));
  if (workers) d.workers = *workers;
  NUDGE_ASSIGN_OR_RETURN(auto batch, core::YamlInt(doc, node, "batch", "delivery", 1, 10000));
  if (batch) d.batch = *batch;
  NUDGE_ASSIGN_OR_RETURN(auto poll, core::YamlDuration(doc, node, "poll"));
  if (poll) d.poll = std::max<core::Millis>(10, *poll);
  NUDGE_ASSIGN_OR_RETURN(auto opens, core::YamlBool(doc, node, "track_opens"));
  if (opens) d.track_opens = *opens;
  NUDGE_ASSIGN_OR_RETURN(auto clicks, core::YamlBool(doc, node, "track_clicks"));
  if (clicks) d.track_clicks = *clicks;
  NUDGE_ASSIGN_OR_RETURN(auto hold, core::YamlBool(doc, node, "hold"));
  if (hold) c.delivery_hold = *hold;
  NUDGE_ASSIGN_OR_RETURN(auto mailbox, core::YamlString(doc, node, "unsubscribe_mailbox"));
  if (mailbox) {
    const size_t at = mailbox->find('@');
    if (at == std::string::npos || at == 0 || at + 1 == mailbox->size() ||
        mailbox->find_first_of(" \t<>\",;") != std::string::npos)
      return doc.ErrorAt(
          node["unsubscribe_mailbox"], "delivery.unsubscribe_mailbox",
          "expected an email address such as unsubscribe@mail.acme.test, got '" + *mailbox + "'");
    d.unsubscribe_mailbox = *mailbox;
  }
  if (const YAML::Node r = node["retry"]; r.IsDefined() && !r.IsNull()) {
    if (!r.IsMap()) return doc.ErrorAt(r, "delivery.retry", "expected a mapping");
    NUDGE_TRY(core::YamlNamed(
        core::YamlKnownKeys(doc, r, {"initial", "max", "multiplier", "attempts", "give_up_after"}),
        "delivery.retry"));
    NUDGE_ASSIGN_OR_RETURN(
        auto initial, core::YamlPrefixed(core::YamlDuration(doc, r, "initial"), "delivery.retry"));
    if (initial) d.retry_initial = *initial;
    NUDGE_ASSIGN_OR_RETURN(auto max,
                           core::YamlPrefixed(core::YamlDuration(doc, r, "max"), "delivery.retry"));
    if (max) d.retry_max = *max;
    if (d.retry_max < d.retry_initial)
      return doc.ErrorAt(max ? r["max"] : r["initial"],
                         max ? "delivery.retry.max" : "delivery.retry.initial",
                         "the longest pause (max) is shorter than the first (initial)");
    NUDGE_ASSIGN_OR_RETURN(
        auto mult, core::YamlPrefixed(core::YamlNumber(doc, r, "multiplier"), "delivery.retry"));
    if (mult) {
      if (*mult < 1 || *mult > 10)
        return doc.ErrorAt(r["multiplier"], "delivery.retry.multiplier", "expected 1 to 10");
      d.retry_multiplier = *mult;
    }
    NUDGE_ASSIGN_OR_RETURN(auto attempts,
                           core::YamlInt(doc, r, "attempts", "delivery.retry", 1, 100));
    if (attempts) d.max_attempts = *attempts;
    NUDGE_ASSIGN_OR_RETURN(
        auto give_up,
        core::YamlPrefixed(core::YamlDuration(doc, r, "give_up_after"), "delivery.retry"));
    if (give_up) d.give_up_after = *give_up;
  }
  return Status::Ok();
}

Status ApplyFeedback(const core::YamlDoc& doc, const YAML::Node& node, Config& c) {
  if (!node.IsMap()) return doc.ErrorAt(node, "feedback", "expected a mapping");
  NUDGE_TRY(core::YamlKnownKeys(doc, node, {"listen", "maildir", "poll"}));
  NUDGE_ASSIGN_OR_RETURN(auto listen, core::YamlString(doc, node, "listen"));
  if (listen) {
    if (Status s = CheckListen(*listen, "feedback.listen", /*empty_host=*/true); !s.ok())
      return doc.ErrorAt(node["listen"], "feedback.listen", s.message());
    c.feedback_listen = *listen;
  }
  NUDGE_ASSIGN_OR_RETURN(auto maildir, core::YamlString(doc, node, "maildir"));
  if (maildir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(*maildir, ec))
      return doc.ErrorAt(
          node["maildir"], "feedback.maildir",
          "no such directory: '" + *maildir + "' (bounces delivered there would never be read)");
    c.feedback_maildir = *maildir;
  }
  NUDGE_ASSIGN_OR_RETURN(auto poll, core::YamlDuration(doc, node, "poll"));
  if (poll) c.feedback_poll = std::max<core::Millis>(100, *poll);
  return Status::Ok();
}

Status ApplyFile(const std::string& path, Config& c) {
  if (!std::filesystem::exists(path)) return Status::Invalid("no such file", path);
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) return Status::Invalid("cannot read the file", path);
  if (text.str().find_first_not_of(" \t\r\n") == std::string::npos) return Status::Ok();
  NUDGE_ASSIGN_OR_RETURN(core::YamlDoc doc, core::LoadYaml(text.str(), path));
  const YAML::Node& root = doc.root;
  const std::string base_dir = std::filesystem::path(path).parent_path().string();
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      const std::string where = Where(path, kv.first.Mark()) + ": " + key;
      auto scalar = [&]() -> Result<std::string> {
        if (!v.IsScalar()) return Err(Status::Invalid("expected a single value", where));
        return v.as<std::string>();
      };
      if (key == "public_url") {
        NUDGE_ASSIGN_OR_RETURN(c.public_url, scalar());
        NUDGE_TRY(CheckPublicUrl(c.public_url, where));
      } else if (key == "channels") {
        channel::ChannelsConfigContext cc;
        cc.base_dir = base_dir;
        NUDGE_ASSIGN_OR_RETURN(c.channels, channel::ParseChannelsConfig(doc, v, cc));
      } else if (key == "delivery") {
        NUDGE_TRY(core::YamlNamed(ApplyDelivery(doc, v, c), "delivery"));
      } else if (key == "feedback") {
        NUDGE_TRY(core::YamlNamed(ApplyFeedback(doc, v, c), "feedback"));
      } else if (key == "listen") {
        NUDGE_ASSIGN_OR_RETURN(c.listen, scalar());
        if (Status s = CheckListen(c.listen, "listen"); !s.ok())
          return Status::Invalid(s.message(), where);
      } else if (key == "data") {
        NUDGE_ASSIGN_OR_RETURN(c.data, scalar());
      } else if (key == "http_threads") {
        NUDGE_ASSIGN_OR_RETURN(auto s, scalar());
        NUDGE_ASSIGN_OR_RETURN(c.http_threads, ParseInt(s, where, 1, 256));
      } else if (key == "default_region") {
        NUDGE_ASSIGN_OR_RETURN(c.default_region, scalar());
        NUDGE_TRY(CheckRegion(c.default_region, where));
      } else if (key == "log_level") {
        NUDGE_ASSIGN_OR_RETURN(c.log_level, scalar());
        NUDGE_TRY(CheckLogLevel(c.log_level, where));
      } else if (key == "write_key" || key == "admin_key") {
        NUDGE_ASSIGN_OR_RETURN(auto k, scalar());
        NUDGE_TRY(CheckKey(k, key == "write_key", where));
        (key == "write_key" ? c.write_key : c.admin_key) = std::move(k);
      } else if (key == "limits") {
        if (!v.IsMap()) return Status::Invalid("expected a mapping", where);
        for (const auto& lim : v) {
          const std::string lk = lim.first.as<std::string>();
          const std::string lwhere = Where(path, lim.first.Mark()) + ": limits." + lk;
          size_t* target = lk == "max_message_bytes"    ? &c.max_message_bytes
                           : lk == "max_batch_bytes"    ? &c.max_batch_bytes
                           : lk == "max_backlog_events" ? &c.max_backlog_events
                           : lk == "max_backlog_bytes"  ? &c.max_backlog_bytes
                                                        : nullptr;
          if (!target)
            return Status::Invalid(
                "unknown setting (known: max_message_bytes, max_batch_bytes, max_backlog_events, "
                "max_backlog_bytes)",
                lwhere);
          if (!lim.second.IsScalar()) return Status::Invalid("expected a single value", lwhere);
          const bool memory = lk == "max_backlog_bytes";
          NUDGE_ASSIGN_OR_RETURN(
              int n, ParseInt(lim.second.as<std::string>(), lwhere, memory ? 1 << 20 : 1024,
                              memory ? std::numeric_limits<int>::max() : 64 << 20));
          *target = static_cast<size_t>(n);
        }
        if (c.max_message_bytes > c.max_batch_bytes)
          return Status::Invalid("max_message_bytes (" + std::to_string(c.max_message_bytes) +
                                     ") is more than max_batch_bytes (" +
                                     std::to_string(c.max_batch_bytes) +
                                     "): a batch holds at least one message",
                                 where);
      } else {
        return Status::Invalid(
            "unknown setting (known: listen, data, http_threads, default_region, log_level, "
            "write_key, admin_key, limits, public_url, channels, delivery, feedback)",
            where);
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::Invalid(e.msg, Where(path, e.mark));
  }
  return Status::Ok();
}

}  // namespace

std::map<std::string, std::string> NudgeEnvironment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("NUDGE_", 0) != 0) continue;
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

Result<Config> LoadConfig(const Flags& flags, const std::map<std::string, std::string>& env) {
  Config c;
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  std::optional<std::string> file = flags.config ? flags.config : get("NUDGE_CONFIG");
  if (file) NUDGE_TRY(ApplyFile(*file, c));

  if (auto v = get("NUDGE_LISTEN")) {
    NUDGE_TRY(CheckListen(*v, "NUDGE_LISTEN"));
    c.listen = *v;
  }
  if (auto v = get("NUDGE_DATA")) c.data = *v;
  if (auto v = get("NUDGE_HTTP_THREADS")) {
    NUDGE_ASSIGN_OR_RETURN(c.http_threads, ParseInt(*v, "NUDGE_HTTP_THREADS", 1, 256));
  }
  if (auto v = get("NUDGE_DEFAULT_REGION")) {
    NUDGE_TRY(CheckRegion(*v, "NUDGE_DEFAULT_REGION"));
    c.default_region = *v;
  }
  if (auto v = get("NUDGE_LOG_LEVEL")) {
    NUDGE_TRY(CheckLogLevel(*v, "NUDGE_LOG_LEVEL"));
    c.log_level = *v;
  }
  if (auto v = get("NUDGE_WRITE_KEY"); v && !v->empty()) {
    NUDGE_TRY(CheckKey(*v, /*write_key=*/true, "NUDGE_WRITE_KEY"));
    c.write_key = *v;
  }
  if (auto v = get("NUDGE_ADMIN_KEY"); v && !v->empty()) {
    NUDGE_TRY(CheckKey(*v, /*write_key=*/false, "NUDGE_ADMIN_KEY"));
    c.admin_key = *v;
  }

  if (flags.listen) {
    NUDGE_TRY(CheckListen(*flags.listen, "--listen"));
    c.listen = *flags.listen;
  }
  if (flags.data) c.data = *flags.data;
  if (auto v = get("NUDGE_PUBLIC_URL"); v && !v->empty()) {
    NUDGE_TRY(CheckPublicUrl(*v, "NUDGE_PUBLIC_URL"));
    c.public_url = *v;
  }
  if (auto v = get("NUDGE_DELIVERY_HOLD"); v && !v->empty()) {
    NUDGE_ASSIGN_OR_RETURN(c.delivery_hold, ParseSwitch(*v, "NUDGE_DELIVERY_HOLD"));
  }
  // Read by the process before the configuration (core/huge_pages.cc); checked here.
  if (auto v = get("NUDGE_HUGE_PAGES")) NUDGE_TRY(ParseSwitch(*v, "NUDGE_HUGE_PAGES"));
  if (c.public_url.empty()) c.public_url = "http://" + c.listen;
  while (!c.public_url.empty() && c.public_url.back() == '/') c.public_url.pop_back();
  c.delivery.public_url = c.public_url;
  if (c.channels.email)
    c.delivery.message_id_domain =
        c.channels.email->from.address.substr(c.channels.email->from.address.find('@') + 1);

  NUDGE_TRY(CheckRegion(c.default_region, "default_region"));
  return c;
}

}  // namespace nudge::app
