#include "app/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

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

Status CheckLogLevel(const std::string& level, const std::string& where) {
  static const std::set<std::string> kLevels{"trace", "debug", "info", "warn", "error", "off"};
  if (!kLevels.count(level))
    return Status::Invalid(
        "expected one of trace, debug, info, warn, error, off; got '" + level + "'", where);
  return Status::Ok();
}

Status ApplyFile(const std::string& path, Config& c) {
  if (!std::filesystem::exists(path)) return Status::Invalid("no such file", path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return Status::Invalid(e.msg, Where(path, e.mark));
  }
  if (root.IsNull()) return Status::Ok();
  if (!root.IsMap()) return Status::Invalid("the configuration must be a mapping of keys", path);
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      const std::string where = Where(path, kv.first.Mark()) + " " + key;
      auto scalar = [&]() -> Result<std::string> {
        if (!v.IsScalar()) return Err(Status::Invalid("expected a single value", where));
        return v.as<std::string>();
      };
      if (key == "listen") {
        NUDGE_ASSIGN_OR_RETURN(c.listen, scalar());
      } else if (key == "data") {
        NUDGE_ASSIGN_OR_RETURN(c.data, scalar());
      } else if (key == "http_threads") {
        NUDGE_ASSIGN_OR_RETURN(auto s, scalar());
        NUDGE_ASSIGN_OR_RETURN(c.http_threads, ParseInt(s, where, 1, 256));
      } else if (key == "default_region") {
        NUDGE_ASSIGN_OR_RETURN(c.default_region, scalar());
      } else if (key == "log_level") {
        NUDGE_ASSIGN_OR_RETURN(c.log_level, scalar());
        NUDGE_TRY(CheckLogLevel(c.log_level, where));
      } else if (key == "write_key") {
        NUDGE_ASSIGN_OR_RETURN(c.write_key, scalar());
      } else if (key == "admin_key") {
        NUDGE_ASSIGN_OR_RETURN(c.admin_key, scalar());
      } else if (key == "limits") {
        if (!v.IsMap()) return Status::Invalid("expected a mapping", where);
        for (const auto& lim : v) {
          const std::string lk = lim.first.as<std::string>();
          const std::string lwhere = Where(path, lim.first.Mark()) + " limits." + lk;
          NUDGE_ASSIGN_OR_RETURN(int n,
                                 ParseInt(lim.second.as<std::string>(), lwhere, 1024, 64 << 20));
          if (lk == "max_message_bytes") {
            c.max_message_bytes = static_cast<size_t>(n);
          } else if (lk == "max_batch_bytes") {
            c.max_batch_bytes = static_cast<size_t>(n);
          } else {
            return Status::Invalid("unknown setting (known: max_message_bytes, max_batch_bytes)",
                                   lwhere);
          }
        }
      } else {
        return Status::Invalid(
            "unknown setting (known: listen, data, http_threads, default_region, log_level, "
            "write_key, admin_key, limits)",
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

  if (auto v = get("NUDGE_LISTEN")) c.listen = *v;
  if (auto v = get("NUDGE_DATA")) c.data = *v;
  if (auto v = get("NUDGE_HTTP_THREADS")) {
    NUDGE_ASSIGN_OR_RETURN(c.http_threads, ParseInt(*v, "NUDGE_HTTP_THREADS", 1, 256));
  }
  if (auto v = get("NUDGE_DEFAULT_REGION")) c.default_region = *v;
  if (auto v = get("NUDGE_LOG_LEVEL")) {
    NUDGE_TRY(CheckLogLevel(*v, "NUDGE_LOG_LEVEL"));
    c.log_level = *v;
  }
  if (auto v = get("NUDGE_WRITE_KEY"); v && !v->empty()) c.write_key = *v;
  if (auto v = get("NUDGE_ADMIN_KEY"); v && !v->empty()) c.admin_key = *v;

  if (flags.listen) c.listen = *flags.listen;
  if (flags.data) c.data = *flags.data;

  if (c.default_region.size() != 2)
    return Err(Status::Invalid(
        "expected a two-letter country code such as US or DE, got '" + c.default_region + "'",
        "default_region"));
  return c;
}

}  // namespace nudge::app
