// `nudge render`: templates rendered offline, for writing and checking them without a server.
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "app/offline.h"
#include "cli/workspace_files.h"
#include "content/template.h"
#include "core/files.h"

namespace nudge::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Partials beside the rendered file: <name>.liquid, or <name>.yaml (.yml) with channel: partial.
// Compiled on first use; a partial that does not compile renders as Liquid's own error does.
class DirectoryPartials final : public content::PartialLookup {
 public:
  explicit DirectoryPartials(fs::path dir) : dir_(std::move(dir)) {}

  Result<std::shared_ptr<const content::Template>> Find(std::string_view name) const override {
    const std::string key(name);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    auto found = Load(key);
    if (!found) return Err(found.error());
    cache_[key] = *found;
    return *found;
  }

  bool Exists(std::string_view name) const {
    const std::string n(name);
    if (n.find('/') != std::string::npos || n.empty() || n[0] == '.') return false;
    std::error_code ec;
    return fs::is_regular_file(dir_ / (n + ".liquid"), ec) ||
           fs::is_regular_file(dir_ / (n + ".yaml"), ec) ||
           fs::is_regular_file(dir_ / (n + ".yml"), ec);
  }

 private:
  Result<std::shared_ptr<const content::Template>> Load(const std::string& name) const {
    if (!Exists(name)) return Err(Status::NotFound("No such template '" + name + "'"));
    content::CompileOptions co;
    co.filters = content::NudgeFilters();
    if (auto text = core::ReadFile(dir_ / (name + ".liquid"))) {
      auto t = content::Template::Compile(*text, co);
      if (!t)
        return Err(
            Status::Invalid(name + ".liquid:" + t.error().where() + ": " + t.error().message()));
      return *t;
    }
    for (const char* ext : {".yaml", ".yml"}) {
      const fs::path f = dir_ / (name + ext);
      std::error_code ec;
      if (!fs::is_regular_file(f, ec)) continue;
      NUDGE_ASSIGN_OR_RETURN(auto doc, cli::ReadTemplateDocument(f, f.filename().string()));
      content::TemplateEnv env;
      env.partial_exists = [this](std::string_view p) { return Exists(p); };
      NUDGE_ASSIGN_OR_RETURN(auto tmpl,
                             content::ParseTemplate(doc.text, doc.label, std::nullopt, env));
      if (tmpl->channel != "partial" || !tmpl->parts.body)
        return Err(Status::NotFound("'" + name + "' is not a partial (channel: partial)"));
      return tmpl->parts.body;
    }
    return Err(Status::NotFound("No such template '" + name + "'"));
  }

  fs::path dir_;
  mutable std::map<std::string, std::shared_ptr<const content::Template>> cache_;
};

}  // namespace

int RunRender(const std::string& file, const std::optional<std::string>& context_file, bool html) {
  const fs::path path(file);
  json context = json::object();
  if (context_file) {
    auto text = core::ReadFile(*context_file);
    if (!text) {
      std::fprintf(stderr, "nudge: cannot read %s\n", context_file->c_str());
      return 2;
    }
    try {
      context = json::parse(*text);
    } catch (const json::parse_error& e) {
      std::fprintf(stderr, "nudge: %s: not JSON (byte %zu): %s\n", context_file->c_str(), e.byte,
                   e.what());
      return 2;
    }
    if (!context.is_object()) {
      std::fprintf(stderr, "nudge: %s: expected a JSON object of variables\n",
                   context_file->c_str());
      return 2;
    }
  }
  auto lc = content::Context::FromJson(context);
  if (!lc) {
    std::fprintf(stderr, "nudge: %s\n", lc.error().ToString().c_str());
    return 2;
  }
  DirectoryPartials partials(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  const std::string ext = path.extension().string();
  const bool yaml = ext == ".yaml" || ext == ".yml" || ext == ".json";

  if (!yaml) {
    auto text = core::ReadFile(path);
    if (!text) {
      std::fprintf(stderr, "nudge: cannot read %s\n", file.c_str());
      return 2;
    }
    content::CompileOptions co;
    co.filters = content::NudgeFilters();
    auto t = content::Template::Compile(*text, co);
    if (!t) {
      std::fprintf(stderr, "%s:%s: %s\n", file.c_str(), t.error().where().c_str(),
                   t.error().message().c_str());
      return 1;
    }
    content::RenderOptions ro;
    ro.html = html;
    ro.partials = &partials;
    auto out = (*t)->Render(*lc, ro);
    if (!out) {
      std::fprintf(stderr, "%s:%s: %s\n", file.c_str(), out.error().where().c_str(),
                   out.error().message().c_str());
      return 1;
    }
    std::fwrite(out->data(), 1, out->size(), stdout);
    return 0;
  }

  auto doc = cli::ReadTemplateDocument(path, file);
  if (!doc) {
    std::fprintf(stderr, "%s\n", doc.error().ToString().c_str());
    return 1;
  }
  content::TemplateEnv env;
  env.partial_exists = [&partials](std::string_view p) { return partials.Exists(p); };
  auto tmpl = content::ParseTemplate(doc->text, doc->label, std::nullopt, env);
  if (!tmpl) {
    const std::string message = doc->MapError(tmpl.error());
    std::fprintf(stderr, "%s\n", message.c_str());
    return 1;
  }
  content::TemplateRenderOptions ro;
  ro.partials = &partials;
  if (!(*tmpl)->layout.empty()) {
    auto layout = partials.Find((*tmpl)->layout);
    if (!layout) {
      std::fprintf(stderr, "%s: layout: %s\n", file.c_str(), layout.error().ToString().c_str());
      return 1;
    }
    ro.layout = *layout;
  }
  auto rendered = content::RenderTemplate(**tmpl, *lc, ro);
  if (!rendered) {
    std::fprintf(stderr, "%s: %s\n", file.c_str(), rendered.error().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", rendered->ToJson().dump(2).c_str());
  return 0;
}

}  // namespace nudge::app
