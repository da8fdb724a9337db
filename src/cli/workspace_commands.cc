#include "cli/workspace_commands.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "cli/client.h"
#include "cli/workspace_files.h"
#include "core/files.h"
#include "core/url.h"

namespace nudge::cli {
namespace {

namespace fs = std::filesystem;
using core::ReadFile;
using core::YamlFiles;
using nlohmann::json;

struct Flags {
  std::optional<std::string> server;
  std::optional<std::string> key;
};

void AddClientFlags(CLI::App& cmd, Flags& f) {
  cmd.add_option("--server", f.server,
                 "nudge's URL (default $NUDGE_SERVER or http://127.0.0.1:8080)");
  cmd.add_option("--key", f.key, "admin key (default $NUDGE_ADMIN_KEY)");
}

// The client of the admin API the flags name, or nothing once the reason is printed.
std::optional<ApiClient> Connect(const Flags& flags) {
  auto client = ApiClient::Make(flags.server, flags.key);
  if (!client) {
    std::fprintf(stderr, "nudge: %s\n", client.error().ToString().c_str());
    return std::nullopt;
  }
  return std::move(*client);
}

// One file to PUT: where it goes and how its errors are named.
struct Item {
  fs::path file;
  std::string label;                      // "segments/engaged.yaml"
  std::string path;                       // "/api/v1/segments/engaged"
  std::string kind;                       // "segment", "scoring", "stages", "template", "image"
  std::optional<TemplateDocument> doc{};  // templates: the document with its .liquid parts
  std::optional<json> image{};            // images: {"yaml", "assets"}
};

int Apply(const Flags& flags, const std::string& dir_text) {
  const fs::path dir(dir_text);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "nudge: %s is not a directory\n", dir_text.c_str());
    return 2;
  }
  auto client = Connect(flags);
  if (!client) return 2;
  std::vector<Item> segments, singles;
  for (const auto& f : YamlFiles(dir / "segments"))
    segments.push_back({f, "segments/" + f.filename().string(),
                        "/api/v1/segments/" + f.stem().string(), "segment"});
  for (const char* name : {"scoring", "stages", "policies"}) {
    for (const char* ext : {".yaml", ".yml"}) {
      const fs::path f = dir / (std::string(name) + ext);
      if (fs::exists(f))
        singles.push_back({f, f.filename().string(), std::string("/api/v1/") + name, name});
    }
  }
  std::vector<Item> journeys;
  for (const auto& f : YamlFiles(dir / "journeys"))
    journeys.push_back({f, "journeys/" + f.filename().string(),
                        "/api/v1/journeys/" + f.stem().string(), "journey"});
  // Templates: partials (and layouts) first, since the others name them.
  int failures = 0;
  std::vector<Item> partials, templates, images;
  for (const auto& f : YamlFiles(dir / "templates")) {
    Item item{f, "templates/" + f.filename().string(), "", "template"};
    auto doc = ReadTemplateDocument(f, item.label);
    if (!doc) {
      std::fprintf(stderr, "error: %s\n", doc.error().ToString().c_str());
      ++failures;
      continue;
    }
    item.path = "/api/v1/templates/" + doc->id;
    const bool partial = doc->channel == "partial";
    item.doc = std::move(*doc);
    (partial ? partials : templates).push_back(std::move(item));
  }
  for (const auto& f : YamlFiles(dir / "images")) {
    Item item{f, "images/" + f.filename().string(), "/api/v1/images/" + f.stem().string(), "image"};
    auto body = ReadImageDocument(f, item.label);
    if (!body) {
      std::fprintf(stderr, "error: %s\n", body.error().ToString().c_str());
      ++failures;
      continue;
    }
    item.image = std::move(*body);
    images.push_back(std::move(item));
  }
  if (segments.empty() && singles.empty() && journeys.empty() && partials.empty() &&
      templates.empty() && images.empty() && failures == 0) {
    std::fprintf(stderr,
                 "nudge: nothing to apply in %s (segments/, templates/, images/, journeys/, "
                 "scoring.yaml, stages.yaml, policies.yaml)\n",
                 dir_text.c_str());
    return 2;
  }
  auto put = [&](const Item& item, std::string& error) -> bool {
    std::optional<std::string> body;
    if (item.doc) {
      body = item.doc->text;
    } else if (item.image) {
      body = item.image->dump();
    } else {
      body = ReadFile(item.file);
    }
    if (!body) {
      error = item.label + ": cannot read the file";
      return false;
    }
    auto r = client->Call("PUT", item.path, *body, {"X-Nudge-Source: " + item.label});
    if (!r) {
      error = r.error().ToString();
      return false;
    }
    const json j = json::parse(r->body, nullptr, false);
    if (r->status != 200) {
      error = j.is_object() && j.contains("error") ? j["error"].get<std::string>()
                                                   : "HTTP " + std::to_string(r->status);
      if (item.doc && j.is_object() && j.contains("line") && j.contains("column"))
        error = item.doc->MapError(error, j["line"].get<int>(), j["column"].get<int>());
      if (error.find(item.label) == std::string::npos &&
          (!item.doc || item.doc->parts.empty() || error.find(".liquid") == std::string::npos))
        error = item.label + ": " + error;
      return false;
    }
    if (item.kind == "template") {
      std::printf("%s: template %s (%s), version %lld\n", item.label.c_str(),
                  j.value("id", "?").c_str(), j.value("channel", "?").c_str(),
                  static_cast<long long>(j.value("version", 0)));
    } else if (item.kind == "image") {
      std::printf("%s: image %s (%dx%d), version %lld\n", item.label.c_str(),
                  j.value("id", "?").c_str(), j.value("width", 0), j.value("height", 0),
                  static_cast<long long>(j.value("version", 0)));
    } else if (item.kind == "segment" || item.kind == "journey") {
      std::printf("%s: %s %s, version %lld (%s)\n", item.label.c_str(), item.kind.c_str(),
                  j.value("id", "?").c_str(), static_cast<long long>(j.value("version", 0)),
                  j.value("status", "?").c_str());
    } else {
      std::printf("%s: %s applied\n", item.label.c_str(), item.kind.c_str());
    }
    if (auto w = j.find("warnings"); w != j.end() && w->is_array())
      for (const auto& line : *w)
        if (line.is_string())
          std::fprintf(stderr, "warning: %s: %s\n", item.label.c_str(),
                       line.get<std::string>().c_str());
    return true;
  };
  // Puts a group of files; those refused with an error containing `retry_on` (they name one
  // of the group not put yet) are tried again while that makes progress. Errors are printed.
  auto put_group = [&](const std::vector<Item>& group, std::string_view retry_on) {
    std::vector<Item> waiting = group;
    std::map<std::string, std::string> refused;  // label -> its last error
    for (int pass = 0; pass < 16 && !waiting.empty(); ++pass) {
      std::vector<Item> next;
      for (const Item& item : waiting) {
        std::string error;
        if (put(item, error)) {
          refused.erase(item.label);
          continue;
        }
        refused[item.label] = error;
        if (!retry_on.empty() && error.find(retry_on) != std::string::npos) next.push_back(item);
      }
      if (next.size() == waiting.size()) break;  // no progress
      waiting = std::move(next);
    }
    for (const auto& [label, error] : refused) std::fprintf(stderr, "error: %s\n", error.c_str());
    failures += static_cast<int>(refused.size());
  };
  put_group(segments, "unknown segment");
  put_group(singles, "");
  put_group(partials, "is not defined");  // partials may render each other
  put_group(templates, "");
  put_group(images, "");
  put_group(journeys, "");  // last: they name segments and templates and use the policies
  if (failures) {
    std::fprintf(stderr, "nudge apply: %d file(s) refused; the others were applied\n", failures);
    return 1;
  }
  return 0;
}

int Preview(const Flags& flags, const std::string& condition, int sample) {
  auto client = Connect(flags);
  if (!client) return 2;
  auto r = client->Call("POST", "/api/v1/segments/preview",
                        json{{"condition", condition}, {"sample", sample}}.dump());
  if (!r) {
    std::fprintf(stderr, "nudge: %s\n", r.error().ToString().c_str());
    return 1;
  }
  const json j = json::parse(r->body, nullptr, false);
  if (r->status != 200) {
    std::string where;
    if (j.is_object() && j.contains("line"))
      where = std::to_string(j["line"].get<int>()) + ":" + std::to_string(j["column"].get<int>());
    std::fprintf(stderr, "nudge: %s\n",
                 j.is_object() ? j.value("error", r->body).c_str() : r->body.c_str());
    if (!where.empty()) {
      // Point at the spot under the condition as typed.
      std::fprintf(stderr, "  %s\n", condition.c_str());
      const int column = j["column"].get<int>();
      if (j["line"].get<int>() == 1 && column > 0)
        std::fprintf(stderr, "  %s^\n", std::string(static_cast<size_t>(column - 1), ' ').c_str());
    }
    return r->status == 400 ? 2 : 1;
  }
  std::printf("%llu contacts match\n", static_cast<unsigned long long>(j.value("count", 0ULL)));
  for (const auto& c : j["sample"]) {
    const std::string user = c["user_id"].is_string() ? c["user_id"].get<std::string>() : "-";
    const std::string email = c["email"].is_string() ? c["email"].get<std::string>() : "-";
    std::printf("  %-8lld %-24s %s\n", static_cast<long long>(c.value("id", 0LL)), user.c_str(),
                email.c_str());
  }
  return 0;
}

int Export(const Flags& flags, const std::optional<std::string>& out, const std::string& origin) {
  auto client = Connect(flags);
  if (!client) return 2;
  std::FILE* file = stdout;
  const std::string tmp = out ? *out + ".partial" : "";
  if (out) {
    file = std::fopen(tmp.c_str(), "w");
    if (!file) {
      std::fprintf(stderr, "nudge: cannot write %s\n", out->c_str());
      return 2;
    }
  }
  int64_t after = 0;
  size_t total = 0;
  for (int page = 0; page < 10'000'000; ++page) {
    auto r = client->CallOk(
        "GET", "/api/v1/events?limit=1000&origin=" + origin + "&after=" + std::to_string(after));
    if (!r) {
      std::fprintf(stderr, "nudge: %s (after %zu events)\n", r.error().ToString().c_str(), total);
      if (out) {
        std::fclose(file);
        std::remove(tmp.c_str());
      }
      return 1;
    }
    const json j = json::parse(r->body, nullptr, false);
    for (const auto& e : j["events"]) {
      std::fputs(e.dump().c_str(), file);
      std::fputc('\n', file);
      ++total;
    }
    if (!j["next_after"].is_number()) break;
    after = j["next_after"].get<int64_t>();
  }
  if (out) {
    std::fclose(file);
    std::rename(tmp.c_str(), out->c_str());
    std::fprintf(stderr, "%zu events written to %s\n", total, out->c_str());
  }
  return 0;
}

// Prints an API error ("nudge: ...") and returns the exit code for it.
int ApiError(const Result<ApiResponse>& r) {
  if (!r) {
    std::fprintf(stderr, "nudge: %s\n", r.error().ToString().c_str());
    return 1;
  }
  const json j = json::parse(r->body, nullptr, false);
  std::fprintf(stderr, "nudge: %s\n",
               j.is_object() && j.contains("error")
                   ? j["error"].get<std::string>().c_str()
                   : ("HTTP " + std::to_string(r->status)).c_str());
  return r->status == 400 || r->status == 404 ? 2 : 1;
}

struct SuppressArgs {
  std::string address;
  std::string channel = "email";
  std::string reason = "manual";
  std::string detail;
};

int SuppressAdd(const Flags& flags, const SuppressArgs& a) {
  auto client = Connect(flags);
  if (!client) return 2;
  json body{{"channel", a.channel}, {"address", a.address}, {"reason", a.reason}};
  if (!a.detail.empty()) body["detail"] = a.detail;
  auto r = client->Call("POST", "/api/v1/suppressions", body.dump());
  if (!r || (r->status != 200 && r->status != 201)) return ApiError(r);
  const json j = json::parse(r->body, nullptr, false);
  std::printf("suppressed %s for %s (%s)\n", j.value("address", a.address).c_str(),
              a.channel.c_str(), j.value("reason", a.reason).c_str());
  return 0;
}

int SuppressRemove(const Flags& flags, const SuppressArgs& a) {
  auto client = Connect(flags);
  if (!client) return 2;
  auto r = client->Call("DELETE",
                        "/api/v1/suppressions/" + core::PercentEncode(a.channel) + "/" +
                            core::PercentEncode(a.address),
                        "");
  if (!r || r->status != 200) return ApiError(r);
  const json j = json::parse(r->body, nullptr, false);
  std::printf("%s may receive %s again\n", j.value("address", a.address).c_str(),
              a.channel == "sms" ? "text messages" : "emails");
  return 0;
}

int SuppressList(const Flags& flags, const std::string& channel, bool as_json) {
  auto client = Connect(flags);
  if (!client) return 2;
  std::string cursor;
  size_t total = 0;
  for (int page = 0; page < 1'000'000; ++page) {
    std::string path = "/api/v1/suppressions?limit=1000";
    if (!channel.empty()) path += "&channel=" + core::PercentEncode(channel);
    if (!cursor.empty()) path += "&cursor=" + core::PercentEncode(cursor);
    auto r = client->Call("GET", path, "");
    if (!r || r->status != 200) return ApiError(r);
    const json j = json::parse(r->body, nullptr, false);
    for (const auto& s : j["suppressions"]) {
      ++total;
      if (as_json) {
        std::printf("%s\n", s.dump().c_str());
        continue;
      }
      std::printf("%-6s %-40s %-13s %s  %s\n", s.value("channel", "").c_str(),
                  s.value("address", "").c_str(), s.value("reason", "").c_str(),
                  s.value("created_at", "").c_str(),
                  s["detail"].is_string() ? s["detail"].get<std::string>().c_str() : "");
    }
    if (!j["next_cursor"].is_string()) break;
    cursor = j["next_cursor"].get<std::string>();
  }
  if (!as_json) std::fprintf(stderr, "%zu suppressed address(es)\n", total);
  return 0;
}

}  // namespace

void AddExportCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  auto out = std::make_shared<std::optional<std::string>>();
  auto origin = std::make_shared<std::string>("client");
  auto* exp = app.add_subcommand("export", "export data");
  exp->require_subcommand(1);
  auto* events = exp->add_subcommand("events",
                                     "the workspace's events as JSON Lines (Segment "
                                     "messages), oldest first: input for nudge simulate");
  events->add_option("-o,--out", *out, "write to this file (default: standard output)");
  events->add_option("--origin", *origin,
                     "client (default: what was sent), nudge (what nudge "
                     "derived) or all");
  AddClientFlags(*events, *flags);
  events->callback([&exit_code, flags, out, origin] { exit_code = Export(*flags, *out, *origin); });
}

void AddApplyCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  auto dir = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("apply",
                                 "publish a workspace directory: segments/, templates/, "
                                 "images/, journeys/ (*.yaml), scoring.yaml, stages.yaml, "
                                 "policies.yaml");
  cmd->add_option("-f,--file", *dir, "the workspace directory")->required();
  AddClientFlags(*cmd, *flags);
  cmd->callback([&exit_code, flags, dir] { exit_code = Apply(*flags, *dir); });
}

void AddSegmentCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  auto condition = std::make_shared<std::string>();
  auto sample = std::make_shared<int>(10);
  auto* seg = app.add_subcommand("segment", "segments");
  seg->require_subcommand(1);
  auto* preview = seg->add_subcommand("preview",
                                      "count the contacts a condition matches, and show "
                                      "some, without saving anything");
  preview->add_option("condition", *condition, "the condition")->required();
  preview->add_option("--sample", *sample, "how many matching contacts to show (default 10)");
  AddClientFlags(*preview, *flags);
  preview->callback(
      [&exit_code, flags, condition, sample] { exit_code = Preview(*flags, *condition, *sample); });
}

void AddSuppressCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  auto args = std::make_shared<SuppressArgs>();
  auto as_json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("suppress",
                                 "the suppression list: addresses nothing is sent to (an "
                                 "address suppressed because it unsubscribed still gets "
                                 "transactional messages)");
  cmd->require_subcommand(1);
  auto* add = cmd->add_subcommand("add", "suppress an address");
  add->add_option("address", args->address, "email address or phone number")->required();
  add->add_option("--channel", args->channel, "email (default) or sms");
  add->add_option("--reason", args->reason,
                  "manual (default), unsubscribed, hard_bounce or complaint");
  add->add_option("--detail", args->detail, "a note kept with the entry");
  AddClientFlags(*add, *flags);
  add->callback([&exit_code, flags, args] { exit_code = SuppressAdd(*flags, *args); });
  auto* remove = cmd->add_subcommand("remove", "lift the suppression of an address");
  remove->add_option("address", args->address, "email address or phone number")->required();
  remove->add_option("--channel", args->channel, "email (default) or sms");
  AddClientFlags(*remove, *flags);
  remove->callback([&exit_code, flags, args] { exit_code = SuppressRemove(*flags, *args); });
  auto* list = cmd->add_subcommand("list", "print the suppression list");
  list->add_option("--channel", args->channel, "only this channel (email or sms)");
  list->add_flag("--json", *as_json, "one JSON object per line");
  AddClientFlags(*list, *flags);
  list->callback([&exit_code, flags, args, as_json, list] {
    const std::string channel = list->count("--channel") ? args->channel : "";
    exit_code = SuppressList(*flags, channel, *as_json);
  });
}

int ContactShow(const Flags& flags, const std::string& key) {
  auto client = Connect(flags);
  if (!client) return 2;
  auto r = client->Call("GET", "/api/v1/contacts/" + core::PercentEncode(key));
  if (!r || r->status != 200) return ApiError(r);
  const json j = json::parse(r->body, nullptr, false);
  std::printf("%s\n", j.is_discarded() ? r->body.c_str() : j.dump(2).c_str());
  return 0;
}

int ContactErase(const Flags& flags, const std::string& key, bool yes) {
  if (!yes) {
    std::fprintf(stderr,
                 "nudge: erasing %s takes the contact, its events, messages and journey "
                 "history for good; add --yes to do it\n",
                 key.c_str());
    return 2;
  }
  auto client = Connect(flags);
  if (!client) return 2;
  auto r = client->Call("DELETE", "/api/v1/contacts/" + core::PercentEncode(key));
  if (!r || r->status != 200) return ApiError(r);
  const json j = json::parse(r->body, nullptr, false);
  const json user = j.is_object() ? j.value("user_id", json()) : json();
  std::printf("erased contact %lld%s\n",
              static_cast<long long>(j.is_object() ? j.value("id", int64_t{0}) : 0),
              user.is_string() ? (" (user id " + user.get<std::string>() + ")").c_str() : "");
  return 0;
}

void AddContactCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  auto key = std::make_shared<std::string>();
  auto yes = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("contact", "one contact: show it, or erase it (GDPR)");
  cmd->require_subcommand(1);
  const char* key_help =
      "the contact: its user id, an anonymous id, its email, or its phone (starting with +)";
  auto* show = cmd->add_subcommand("show", "print the contact as JSON");
  show->add_option("contact", *key, key_help)->required();
  AddClientFlags(*show, *flags);
  show->callback([&exit_code, flags, key] { exit_code = ContactShow(*flags, *key); });
  auto* erase = cmd->add_subcommand(
      "erase",
      "erase the contact with its identities, events, messages, journey instances, segment "
      "membership and consent records; no copy is left in the server's data directory");
  erase->add_option("contact", *key, key_help)->required();
  erase->add_flag("--yes", *yes, "confirm: the erasure cannot be undone");
  AddClientFlags(*erase, *flags);
  erase->callback([&exit_code, flags, key, yes] { exit_code = ContactErase(*flags, *key, *yes); });
}

}  // namespace nudge::cli
