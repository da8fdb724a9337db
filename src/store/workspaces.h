// Workspaces: separate tenants in one nudge, each with a write key (the SDKs' key, for the
// tracking API) and an admin key (for the admin API). One workspace's keys never reach
// another's data. Keys are shown once, when made, and stored only as SHA-256 hashes.
//
// The registry keeps the key hashes in memory so that authenticating a request costs a hash
// and a map lookup. Thread-safe.
#pragma once

#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "store/store.h"

namespace nudge::store {

struct WorkspaceKeys {
  WorkspaceId id = 0;
  std::string name;
  std::string write_key;  // in clear: only in the answer that creates or rotates them
  std::string admin_key;
};

class WorkspaceRegistry {
 public:
  inline static const std::string kDefault = "default";

  WorkspaceRegistry(Store& store, const core::Clock& clock) : store_(store), clock_(clock) {}

  // Loads the workspaces. Creates "default" when there is none, returning its new keys.
  // Keys given here (from NUDGE_WRITE_KEY / NUDGE_ADMIN_KEY) replace the default
  // workspace's keys; those are not returned since the caller knows them.
  Result<std::optional<WorkspaceKeys>> Bootstrap(const std::optional<std::string>& write_key,
                                                 const std::optional<std::string>& admin_key);

  // kAlreadyExists if the name is taken; kInvalidArgument for a bad name.
  Result<WorkspaceKeys> Create(const std::string& name);

  std::optional<WorkspaceId> ByWriteKey(std::string_view key) const;
  std::optional<WorkspaceId> ByAdminKey(std::string_view key) const;
  std::optional<std::string> NameOf(WorkspaceId id) const;
  std::optional<WorkspaceId> IdOf(std::string_view name) const;
  std::vector<Workspace> List() const;

 private:
  Status Reload();

  Store& store_;
  const core::Clock& clock_;
  mutable std::shared_mutex mutex_;
  std::vector<Workspace> workspaces_;                        // GUARDED_BY(mutex_)
  std::unordered_map<std::string, WorkspaceId> write_keys_;  // hash -> id, GUARDED_BY(mutex_)
  std::unordered_map<std::string, WorkspaceId> admin_keys_;  // hash -> id, GUARDED_BY(mutex_)
};

// A new key: prefix + 32 random alphanumerics ("wk_...", "ak_...").
std::string NewKey(std::string_view prefix);

}  // namespace nudge::store
