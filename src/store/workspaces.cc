#include "store/workspaces.h"

#include <strings.h>

#include <mutex>

#include "core/crypto.h"

namespace nudge::store {

std::string NewKey(std::string_view prefix) { return std::string(prefix) + core::RandomToken(32); }

Status WorkspaceRegistry::Reload() {
  std::vector<Workspace> all;
  NUDGE_TRY(store_.Read([&](ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(all, t.ListWorkspaces());
    return Status::Ok();
  }));
  std::unique_lock lock(mutex_);
  workspaces_ = std::move(all);
  write_keys_.clear();
  admin_keys_.clear();
  for (const auto& w : workspaces_) {
    write_keys_[w.write_key_hash] = w.id;
    admin_keys_[w.admin_key_hash] = w.id;
  }
  return Status::Ok();
}

Result<std::optional<WorkspaceKeys>> WorkspaceRegistry::Bootstrap(
    const std::optional<std::string>& write_key, const std::optional<std::string>& admin_key) {
  NUDGE_TRY(Reload());
  std::optional<WorkspaceKeys> created;
  if (!IdOf(kDefault)) {
    NUDGE_ASSIGN_OR_RETURN(auto keys, Create(kDefault));
    if (!write_key || !admin_key) created = keys;
  }
  if (write_key || admin_key) {
    const WorkspaceId id = *IdOf(kDefault);
    if ((write_key && write_key->empty()) || (admin_key && admin_key->empty()))
      return Err(Status::Invalid("a key may not be empty", write_key && write_key->empty()
                                                               ? "NUDGE_WRITE_KEY"
                                                               : "NUDGE_ADMIN_KEY"));
    if (write_key && admin_key && *write_key == *admin_key)
      return Err(Status::Invalid("the write key and the admin key must differ", "NUDGE_ADMIN_KEY"));
    std::string write_hash, admin_hash;
    {
      std::shared_lock lock(mutex_);
      for (const auto& w : workspaces_)
        if (w.id == id) {
          write_hash = w.write_key_hash;
          admin_hash = w.admin_key_hash;
        }
    }
    if (write_key) write_hash = core::Sha256Hex(*write_key);
    if (admin_key) admin_hash = core::Sha256Hex(*admin_key);
    NUDGE_TRY(store_.WriteSync(
        [&](WriteTxn& t) { return t.UpdateWorkspaceKeys(id, write_hash, admin_hash); }));
    NUDGE_TRY(Reload());
    if (created) {  // only one of the two keys was given: show the one that was made
      if (write_key) created->write_key = *write_key;
      if (admin_key) created->admin_key = *admin_key;
    }
  }
  return created;
}

Result<WorkspaceKeys> WorkspaceRegistry::Create(const std::string& name) {
  if (name.empty() || name.size() > 64)
    return Err(Status::Invalid("a workspace name has 1 to 64 characters", "name"));
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return Err(
          Status::Invalid("a workspace name may hold letters, digits, '-' and '_' only", "name"));
  }
  // "Shop" beside "shop" would be two workspaces no one tells apart.
  {
    std::shared_lock lock(mutex_);
    for (const auto& w : workspaces_)
      if (w.name != name && strcasecmp(w.name.c_str(), name.c_str()) == 0)
        return Err(Status(Code::kAlreadyExists,
                          "'" + name + "' differs from the workspace '" + w.name +
                              "' only in case; names are told apart without it",
                          "name"));
  }
  WorkspaceKeys keys{0, name, NewKey("wk_"), NewKey("ak_")};
  Status s = store_.WriteSync([&](WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(
        keys.id, t.InsertWorkspace({0, name, core::Sha256Hex(keys.write_key),
                                    core::Sha256Hex(keys.admin_key), clock_.NowMillis()}));
    return Status::Ok();
  });
  if (!s.ok()) return Err(s);
  NUDGE_TRY(Reload());
  return keys;
}

std::optional<WorkspaceId> WorkspaceRegistry::ByWriteKey(std::string_view key) const {
  if (key.empty()) return std::nullopt;
  // An SDK sends the same key with every request: the hash of the last key seen on this
  // thread is kept (compared in constant time, so that it tells nothing about that key).
  thread_local std::string last_key, last_hash;
  if (!core::ConstantTimeEquals(key, last_key)) {  // never equal at first: `key` is not empty
    last_hash = core::Sha256Hex(key);
    last_key.assign(key);
  }
  std::shared_lock lock(mutex_);
  auto it = write_keys_.find(last_hash);
  if (it == write_keys_.end()) return std::nullopt;
  return it->second;
}

std::optional<WorkspaceId> WorkspaceRegistry::ByAdminKey(std::string_view key) const {
  if (key.empty()) return std::nullopt;
  const std::string hash = core::Sha256Hex(key);
  std::shared_lock lock(mutex_);
  auto it = admin_keys_.find(hash);
  if (it == admin_keys_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> WorkspaceRegistry::NameOf(WorkspaceId id) const {
  std::shared_lock lock(mutex_);
  for (const auto& w : workspaces_)
    if (w.id == id) return w.name;
  return std::nullopt;
}

std::optional<WorkspaceId> WorkspaceRegistry::IdOf(std::string_view name) const {
  std::shared_lock lock(mutex_);
  for (const auto& w : workspaces_)
    if (w.name == name) return w.id;
  return std::nullopt;
}

std::vector<Workspace> WorkspaceRegistry::List() const {
  std::shared_lock lock(mutex_);
  return workspaces_;
}

}  // namespace nudge::store
