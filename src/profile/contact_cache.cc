#include "profile/contact_cache.h"

namespace nudge::profile {

bool AggregateRegistry::Adopt(const std::shared_ptr<rules::AggregateSpec>& spec) {
  auto it = by_key_.find(spec->key);
  if (it != by_key_.end()) {
    spec->slot = it->second;
    return false;
  }
  spec->slot = static_cast<int>(by_slot_.size());
  by_slot_.push_back(spec);
  by_key_.emplace(spec->key, spec->slot);
  by_event_[spec->event].push_back(spec->slot);
  return true;
}

const std::vector<int>& AggregateRegistry::SlotsFor(std::string_view event) const {
  static const std::vector<int> kNone;
  auto it = by_event_.find(event);
  return it == by_event_.end() ? kNone : it->second;
}

ContactState* ContactCache::Get(store::ContactId id) {
  if (id < 0) return nullptr;
  ContactState* s = states_.Find(static_cast<size_t>(id));
  return s && s->workspace != 0 ? s : nullptr;
}

const ContactState* ContactCache::Get(store::ContactId id) const {
  return const_cast<ContactCache*>(this)->Get(id);
}

ContactState& ContactCache::Ensure(store::ContactId id, store::WorkspaceId ws) {
  ContactState& slot = states_.Make(static_cast<size_t>(id));
  if (slot.workspace == 0) {
    slot = ContactState{};
    slot.workspace = ws;
    ++count_;
  }
  return slot;
}

void ContactCache::Remove(store::ContactId id) {
  ContactState* s = Get(id);
  if (!s) return;
  *s = ContactState{};  // workspace 0: none
  --count_;
}

void ContactCache::Merge(store::ContactId from, store::ContactId into) {
  ContactState* src = Get(from);
  ContactState* dst = Get(into);
  if (src && dst) {
    dst->aggregates.MergeFrom(src->aggregates, registry_.by_slot());
    if (src->first_seen && (!dst->first_seen || src->first_seen < dst->first_seen))
      dst->first_seen = src->first_seen;
    dst->last_seen = std::max(dst->last_seen, src->last_seen);
  }
  Remove(from);
  merged_into_[from] = into;
}

store::ContactId ContactCache::Resolve(store::ContactId id) const {
  for (int hops = 0; hops < 64; ++hops) {
    auto it = merged_into_.find(id);
    if (it == merged_into_.end()) return id;
    id = it->second;
  }
  return id;
}

bool ContactCache::Widen(store::ContactId id, Millis at) {
  ContactState* s = Get(id);
  if (!s) return false;
  bool moved = false;
  if (!s->first_seen || at < s->first_seen) {
    s->first_seen = at;
    moved = true;
  }
  if (at > s->last_seen) {
    s->last_seen = at;
    moved = true;
  }
  return moved;
}

size_t ContactCache::MemoryBytes() const {
  size_t n = states_.MemoryBytes();
  states_.ForEach([&](size_t, const ContactState& s) {
    if (s.workspace != 0) n += s.traits.capacity() + s.aggregates.MemoryBytes();
  });
  return n;
}

}  // namespace nudge::profile
