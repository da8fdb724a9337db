#include "content/library.h"

#include <algorithm>

namespace nudge::content {

// A workspace's partials: looks up the library's current snapshot on each Find.
class TemplateLibrary::WorkspacePartials final : public PartialLookup {
 public:
  WorkspacePartials(const TemplateLibrary& library, store::WorkspaceId ws)
      : library_(library), ws_(ws) {}
  Result<std::shared_ptr<const Template>> Find(std::string_view name) const override {
    auto info = library_.Get(ws_, std::string(name));
    if (!info || info->tmpl->channel != "partial" || !info->tmpl->parts.body)
      return Err(Status::NotFound("No such template '" + std::string(name) + "'"));
    return info->tmpl->parts.body;
  }

 private:
  const TemplateLibrary& library_;
  store::WorkspaceId ws_;
};

TemplateLibrary::TemplateLibrary(store::Store& store, const core::Clock& clock)
    : store_(store), clock_(clock) {}
TemplateLibrary::~TemplateLibrary() = default;

TemplateLibrary::Workspace& TemplateLibrary::Ensure(store::WorkspaceId ws) const {
  Workspace& w = workspaces_[ws];
  if (!w.partials) w.partials = std::make_unique<WorkspacePartials>(*this, ws);
  return w;
}

Status TemplateLibrary::Load() {
  std::vector<store::Definition> defs;
  NUDGE_TRY(store_.Read([&](store::ReadTxn& r) -> Status {
    NUDGE_ASSIGN_OR_RETURN(defs, r.AllDefinitions("template"));
    return Status::Ok();
  }));
  // Partials first; then the rest, retrying those whose partials come later in the list.
  std::stable_sort(defs.begin(), defs.end(), [](const auto& a, const auto& b) {
    const bool pa = a.body.find("partial") != std::string::npos;
    const bool pb = b.body.find("partial") != std::string::npos;
    return pa > pb;
  });
  std::vector<store::Definition> pending = std::move(defs);
  for (int round = 0; round < 8 && !pending.empty(); ++round) {
    std::vector<store::Definition> again;
    Status last;
    for (const auto& d : pending) {
      TemplateEnv env;
      env.partial_exists = [this, ws = d.workspace](std::string_view p) {
        return Has(ws, std::string(p));
      };
      auto t = ParseTemplate(d.body, "stored template " + d.id, std::string_view(d.id), env);
      if (!t) {
        again.push_back(d);
        last = t.error();
        continue;
      }
      std::lock_guard lock(mutex_);
      Ensure(d.workspace).templates[d.id] = {*t, d.version, d.updated_at};
    }
    if (again.size() == pending.size()) return last;
    pending = std::move(again);
  }
  return Status::Ok();
}

Result<TemplateInfo> TemplateLibrary::Put(store::WorkspaceId ws, std::string_view text,
                                          std::string_view source,
                                          std::optional<std::string_view> id) {
  TemplateEnv env;
  env.partial_exists = [this, ws](std::string_view p) { return Has(ws, std::string(p)); };
  NUDGE_ASSIGN_OR_RETURN(auto tmpl, ParseTemplate(text, source, id, env));
  if (tmpl->channel != "partial") {
    // A partial that others use must stay a partial.
    std::lock_guard lock(mutex_);
    for (const auto& [other_id, info] : Ensure(ws).templates) {
      const auto& ps = info.tmpl->partials;
      if (std::find(ps.begin(), ps.end(), tmpl->id) != ps.end())
        return Err(Status::Invalid("template '" + other_id + "' uses '" + tmpl->id +
                                   "' as a partial: it must keep channel: partial"));
    }
  }
  TemplateInfo info;
  info.tmpl = tmpl;
  NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& txn) -> Status {
    const core::Millis now = clock_.NowMillis();
    NUDGE_ASSIGN_OR_RETURN(int64_t version,
                           txn.PutDefinition(ws, "template", tmpl->id, tmpl->source, now));
    info.version = version;
    info.updated_at = now;
    return Status::Ok();
  }));
  std::lock_guard lock(mutex_);
  TemplateInfo& slot = Ensure(ws).templates[tmpl->id];
  if (slot.tmpl && slot.version == info.version) {
    info.updated_at = slot.updated_at;  // the same body: nothing changed
  }
  slot = info;
  return info;
}

Result<bool> TemplateLibrary::Delete(store::WorkspaceId ws, const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    for (const auto& [other_id, info] : Ensure(ws).templates) {
      const auto& ps = info.tmpl->partials;
      if (other_id != id && std::find(ps.begin(), ps.end(), id) != ps.end())
        return Err(Status::Invalid("template '" + other_id + "' uses '" + id + "'"));
    }
  }
  bool removed = false;
  NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(removed, txn.DeleteDefinition(ws, "template", id));
    return Status::Ok();
  }));
  std::lock_guard lock(mutex_);
  Ensure(ws).templates.erase(id);
  return removed;
}

std::optional<TemplateInfo> TemplateLibrary::Get(store::WorkspaceId ws,
                                                 const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto w = workspaces_.find(ws);
  if (w == workspaces_.end()) return std::nullopt;
  auto it = w->second.templates.find(id);
  if (it == w->second.templates.end()) return std::nullopt;
  return it->second;
}

std::vector<TemplateInfo> TemplateLibrary::List(store::WorkspaceId ws) const {
  std::lock_guard lock(mutex_);
  std::vector<TemplateInfo> out;
  auto w = workspaces_.find(ws);
  if (w == workspaces_.end()) return out;
  for (const auto& [id, info] : w->second.templates) out.push_back(info);
  return out;
}

bool TemplateLibrary::Has(store::WorkspaceId ws, const std::string& id) const {
  return Get(ws, id).has_value();
}

const PartialLookup& TemplateLibrary::Partials(store::WorkspaceId ws) const {
  std::lock_guard lock(mutex_);
  return *Ensure(ws).partials;
}

}  // namespace nudge::content
