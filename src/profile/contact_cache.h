// ContactCache: the contact data conditions read, held in memory for every contact: the
// workspace, traits (JSON text), first and last seen, and behavioural aggregates. With it,
// evaluating a segment for a contact touches no disk and rebuilding a segment over a million
// contacts is a pass over memory.
//
// The cache is filled at start-up from the store (contacts, then a replay of the events), and
// kept current by whoever applies changes, on the store's writer thread, inside the write that
// makes the change durable. Writers hold `mutex` exclusively while they mutate; readers on
// other threads hold it shared.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/chunked.h"
#include "core/string_map.h"
#include "profile/aggregates.h"
#include "rules/condition.h"
#include "store/store.h"

namespace nudge::profile {

// A recorded choice of consent: subscribed, unsubscribed or pending (double opt-in) to a
// channel ("email") or to a topic of it ("email/news").
struct SubscriptionState {
  std::string key;  // "email", "email/news"
  enum class Status : uint8_t { kSubscribed, kUnsubscribed, kPending } status;
};

struct ContactState {
  store::WorkspaceId workspace = 0;  // 0: no contact with this id
  std::string traits = "{}";
  Millis first_seen = 0;
  Millis last_seen = 0;
  ContactAggregates aggregates;
  std::vector<SubscriptionState> subscriptions;  // only those recorded; see Subscribed()
};

// The behavioural terms in use, each with a slot. A spec adopted twice (same key) shares the
// first one's slot. Slots are never reused; a term no longer used keeps its slot (a few bytes).
class AggregateRegistry {
 public:
  // Sets spec.slot, adopting it (or finding the spec with the same key). Returns true when the
  // term is new, i.e. its values must be computed from the event history.
  bool Adopt(const std::shared_ptr<rules::AggregateSpec>& spec);
  const std::shared_ptr<rules::AggregateSpec>& spec(int slot) const { return by_slot_[slot]; }
  const std::vector<std::shared_ptr<rules::AggregateSpec>>& by_slot() const { return by_slot_; }
  // Slots of terms about this event name.
  const std::vector<int>& SlotsFor(std::string_view event) const;

 private:
  std::vector<std::shared_ptr<rules::AggregateSpec>> by_slot_;
  core::StringMap<int> by_key_;
  core::StringMap<std::vector<int>> by_event_;
};

class ContactCache {
 public:
  ContactState* Get(store::ContactId id);
  const ContactState* Get(store::ContactId id) const;
  // The state for id, creating it (in workspace ws) when absent.
  ContactState& Ensure(store::ContactId id, store::WorkspaceId ws);
  void Remove(store::ContactId id);
  // Asks the CPU to fetch id's state (no merge followed, nothing read now).
  void Prefetch(store::ContactId id) const {
    if (id < 0) return;
    if (const ContactState* s = states_.Find(static_cast<size_t>(id))) {
      __builtin_prefetch(s);
      __builtin_prefetch(reinterpret_cast<const char*>(s) + sizeof(ContactState) - 1);
    }
  }
  // Folds `from` into `into` (aggregates, seen times) and forgets `from`; traits are the
  // caller's to set. Remembers the move so later references to `from` find `into`.
  void Merge(store::ContactId from, store::ContactId into);
  // Follows merges: the contact that now stands for id.
  store::ContactId Resolve(store::ContactId id) const;
  // Widens first/last seen to include `at`; true when either moved.
  bool Widen(store::ContactId id, Millis at);

  AggregateRegistry& registry() { return registry_; }
  const AggregateRegistry& registry() const { return registry_; }

  // Contact ids with state, in ascending order, for one workspace (0 = all).
  template <typename F>
  void ForEach(store::WorkspaceId ws, F f) const {
    states_.ForEach([&](size_t id, const ContactState& s) {
      if (s.workspace != 0 && (ws == 0 || s.workspace == ws))
        f(static_cast<store::ContactId>(id), s);
    });
  }
  size_t size() const { return count_; }
  // One past the highest contact id that may have state.
  size_t id_bound() const { return states_.bound(); }
  // Forgets every contact (aggregate slots stay adopted).
  void Clear() {
    states_.Clear();
    merged_into_.clear();
    count_ = 0;
  }
  size_t MemoryBytes() const;

  mutable std::shared_mutex mutex;

 private:
  core::Chunked<ContactState> states_;  // by contact id; workspace 0: none
  std::unordered_map<store::ContactId, store::ContactId> merged_into_;
  size_t count_ = 0;
  AggregateRegistry registry_;
};

}  // namespace nudge::profile
