#include "profile/aggregates.h"

#include <algorithm>
#include <limits>

namespace nudge::profile {

using rules::AggregateSpec;
using rules::Value;

void AggregateState::Insert(Entry e) {
  auto it = std::upper_bound(window_.begin(), window_.end(), e.at,
                             [](Millis t, const Entry& x) { return t < x.at; });
  window_.insert(it, e);
  if (window_.size() <= kMaxEntries) return;
  // Merge the two neighbours closest in time; the merged entry leaves with the later one.
  size_t best = 0;
  Millis gap = std::numeric_limits<Millis>::max();
  for (size_t i = 0; i + 1 < window_.size(); ++i) {
    const Millis g = window_[i + 1].at - window_[i].at;
    if (g < gap) {
      gap = g;
      best = i;
    }
  }
  window_[best + 1].count += window_[best].count;
  window_[best + 1].sum += window_[best].sum;
  window_.erase(window_.begin() + static_cast<std::ptrdiff_t>(best));
}

void AggregateState::Add(const AggregateSpec& spec, Millis at, double amount) {
  if (count_ == 0 || at < first_) first_ = at;
  if (count_ == 0 || at > last_) last_ = at;
  count_ += 1;
  sum_ += amount;
  if (spec.window) Insert({at, 1, amount});
}

Value AggregateState::ValueAt(const AggregateSpec& spec, Millis now) const {
  double count = count_, sum = sum_;
  if (spec.window) {
    count = 0;
    sum = 0;
    const Millis from = now - *spec.window;
    for (const Entry& e : window_) {
      if (e.at <= from || e.at > now) continue;
      count += e.count;
      sum += e.sum;
    }
  }
  switch (spec.kind) {
    case AggregateSpec::Kind::kExists:
      return Value::Bool(count > 0);
    case AggregateSpec::Kind::kCount:
      return Value::Number(count);
    case AggregateSpec::Kind::kSum:
      return Value::Number(sum);
    case AggregateSpec::Kind::kLast:
      return count_ > 0 ? Value::Time(last_) : Value::Null();
    case AggregateSpec::Kind::kFirst:
      return count_ > 0 ? Value::Time(first_) : Value::Null();
  }
  return Value::Null();
}

std::optional<Millis> AggregateState::Expiry(const AggregateSpec& spec, Millis now) const {
  if (!spec.window) return std::nullopt;
  // The earliest entry still inside the window leaves it at at + window; an entry dated in
  // the future (clock skew) enters it at `at`.
  std::optional<Millis> best;
  for (const Entry& e : window_) {
    const Millis leaves = e.at + *spec.window;
    Millis when = e.at > now ? e.at : leaves;
    if (when <= now) continue;
    if (!best || when < *best) best = when;
  }
  return best;
}

void AggregateState::Prune(const AggregateSpec& spec, Millis now) {
  if (!spec.window) return;
  const Millis from = now - *spec.window;
  auto keep =
      std::find_if(window_.begin(), window_.end(), [&](const Entry& e) { return e.at > from; });
  window_.erase(window_.begin(), keep);
}

void AggregateState::Merge(const AggregateSpec& spec, const AggregateState& other) {
  if (other.count_ == 0) return;
  if (count_ == 0 || other.first_ < first_) first_ = other.first_;
  if (count_ == 0 || other.last_ > last_) last_ = other.last_;
  count_ += other.count_;
  sum_ += other.sum_;
  if (spec.window)
    for (const Entry& e : other.window_) Insert(e);
}

size_t AggregateState::MemoryBytes() const {
  return sizeof(*this) + window_.capacity() * sizeof(Entry);
}

AggregateState* ContactAggregates::Find(int slot) {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), slot,
                             [](const auto& p, int s) { return p.first < s; });
  return it != slots_.end() && it->first == slot ? &it->second : nullptr;
}

const AggregateState* ContactAggregates::Find(int slot) const {
  return const_cast<ContactAggregates*>(this)->Find(slot);
}

AggregateState& ContactAggregates::Get(int slot) {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), slot,
                             [](const auto& p, int s) { return p.first < s; });
  if (it != slots_.end() && it->first == slot) return it->second;
  return slots_.insert(it, {slot, AggregateState()})->second;
}

void ContactAggregates::Erase(int slot) {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), slot,
                             [](const auto& p, int s) { return p.first < s; });
  if (it != slots_.end() && it->first == slot) slots_.erase(it);
}

void ContactAggregates::MergeFrom(
    const ContactAggregates& other,
    const std::vector<std::shared_ptr<rules::AggregateSpec>>& specs_by_slot) {
  for (const auto& [slot, state] : other.slots_) {
    if (slot < 0 || static_cast<size_t>(slot) >= specs_by_slot.size() || !specs_by_slot[slot])
      continue;
    Get(slot).Merge(*specs_by_slot[slot], state);
  }
}

size_t ContactAggregates::MemoryBytes() const {
  size_t n = slots_.capacity() * sizeof(slots_[0]);
  for (const auto& [slot, s] : slots_) n += s.MemoryBytes() - sizeof(s);
  return n;
}

}  // namespace nudge::profile
