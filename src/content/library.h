// TemplateLibrary: every workspace's message templates, compiled, in memory, and persisted in
// the store (definitions of kind "template", the source text as written). Journeys name
// templates by id; the delivery pipeline renders them; the API puts, gets and previews them.
//
// Partials (templates with channel: partial) are what {% render %}, {% include %} and
// `layout:` find, per workspace.
//
// Thread-safe: Put and Delete swap immutable snapshots under a mutex; Get returns a snapshot
// that stays valid after a later Put.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "content/template.h"
#include "core/clock.h"
#include "store/store.h"

namespace nudge::content {

struct TemplateInfo {
  std::shared_ptr<const MessageTemplate> tmpl;
  int64_t version = 0;
  core::Millis updated_at = 0;
};

class TemplateLibrary {
 public:
  TemplateLibrary(store::Store& store, const core::Clock& clock);
  ~TemplateLibrary();

  // Reads every workspace's templates from the store (start-up). Partials first, so that the
  // templates using them compile.
  Status Load();

  // Parses, compiles and stores a template (YAML or JSON text). A new body makes a new version;
  // the same body keeps the version. Errors: kInvalidArgument with the position; a partial that
  // other templates use cannot change its channel away from partial.
  Result<TemplateInfo> Put(store::WorkspaceId ws, std::string_view text, std::string_view source,
                           std::optional<std::string_view> id);
  Result<bool> Delete(store::WorkspaceId ws, const std::string& id);

  std::optional<TemplateInfo> Get(store::WorkspaceId ws, const std::string& id) const;
  std::vector<TemplateInfo> List(store::WorkspaceId ws) const;
  bool Has(store::WorkspaceId ws, const std::string& id) const;

  // The workspace's partials, for rendering. Valid as long as the library.
  const PartialLookup& Partials(store::WorkspaceId ws) const;

 private:
  class WorkspacePartials;
  struct Workspace {
    std::map<std::string, TemplateInfo> templates;
    std::unique_ptr<WorkspacePartials> partials;
  };
  Workspace& Ensure(store::WorkspaceId ws) const;  // REQUIRES(mutex_)

  store::Store& store_;
  const core::Clock& clock_;
  mutable std::mutex mutex_;
  mutable std::map<store::WorkspaceId, Workspace> workspaces_;  // GUARDED_BY(mutex_)
};

}  // namespace nudge::content
