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
  const auto index = static_cast<size_t>(id);
  const size_t chunk = index >> kShift;
  if (id < 0 || chunk >= chunks_.size() || !chunks_[chunk]) return nullptr;
  ContactState& s = chunks_[chunk][index & (kChunk - 1)];
  return s.workspace != 0 ? &s : nullptr;
}

const ContactState* ContactCache::Get(store::ContactId id) const {
  return const_cast<ContactCache*>(this)->Get(id);
}

ContactState& ContactCache::Ensure(store::ContactId id, store::WorkspaceId ws) {
  const auto index = static_cast<size_t>(id);
  const size_t chunk = index >> kShift;
  if (chunk >= chunks_.size()) chunks_.resize(chunk + 1);
  if (!chunks_[chunk]) chunks_[chunk] = std::make_unique<ContactState[]>(kChunk);
  ContactState& slot = chunks_[chunk][index & (kChunk - 1)];
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
  *s = ContactState{};
  s->workspace = 0;
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
  size_t n = chunks_.capacity() * sizeof(chunks_[0]);
  for (const auto& chunk : chunks_) {
    if (!chunk) continue;
    n += kChunk * sizeof(ContactState);
    for (size_t i = 0; i < kChunk; ++i) {
      const ContactState& s = chunk[i];
      if (s.workspace != 0) n += s.traits.capacity() + s.aggregates.MemoryBytes();
    }
  }
  return n;
}

}  // namespace nudge::profile
