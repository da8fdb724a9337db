// Behavioural aggregates: what each contact's events add up to, kept per behavioural term of
// the condition language (rules::AggregateSpec), so that evaluating `count(event "X" within
// 7d) >= 3` never rescans the event log.
//
// An aggregate keeps all-time totals (count, sum, first and last time) and, for terms with a
// window, the matching events' times (and amounts) inside the window, so that the count drops
// exactly when an event leaves the window. At most kMaxEntries are kept per window: beyond
// that, the two closest entries merge into one that carries the later time, so a very active
// contact's windowed count can run slightly high near the window's edge (never low).
// Memory: 56 bytes per (contact, aggregate) with events, plus 24 bytes per windowed entry
// (docs/segments.md).
//
// Thread-compatible.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "rules/condition.h"

namespace nudge::profile {

using core::Millis;

class AggregateState {
 public:
  static constexpr size_t kMaxEntries = 32;

  // A matching event at `at`; `amount` is the summed value (kSum), else ignored.
  void Add(const rules::AggregateSpec& spec, Millis at, double amount);
  // The term's value at `now` (kExists: bool; kCount/kSum: number; kLast/kFirst: time/null).
  rules::Value ValueAt(const rules::AggregateSpec& spec, Millis now) const;
  // When the value next changes by time alone: the oldest windowed entry leaving the window.
  std::optional<Millis> Expiry(const rules::AggregateSpec& spec, Millis now) const;
  // Forgets windowed entries that left the window before `now`.
  void Prune(const rules::AggregateSpec& spec, Millis now);
  // Folds another contact's state in (contacts merging, or a backfill meeting live updates).
  void Merge(const rules::AggregateSpec& spec, const AggregateState& other);
  bool empty() const { return count_ == 0; }
  size_t MemoryBytes() const;
  // Asks the CPU to fetch the windowed entries now (they are read soon after).
  void Prefetch() const { __builtin_prefetch(window_.data()); }

 private:
  struct Entry {
    Millis at;
    uint32_t count;
    double sum;
  };
  void Insert(Entry e);

  double count_ = 0;
  double sum_ = 0;
  Millis first_ = 0;
  Millis last_ = 0;
  std::vector<Entry> window_;  // ascending by time
};

// A contact's aggregates, by slot (the index AggregateSpec::slot names), sparse.
class ContactAggregates {
 public:
  AggregateState* Find(int slot);
  const AggregateState* Find(int slot) const;
  AggregateState& Get(int slot);
  void Erase(int slot);
  void MergeFrom(const ContactAggregates& other,
                 const std::vector<std::shared_ptr<rules::AggregateSpec>>& specs_by_slot);
  const std::vector<std::pair<int, AggregateState>>& all() const { return slots_; }
  size_t MemoryBytes() const;
  // Asks the CPU to fetch the slots now (up to 16 cache lines; they are searched soon after).
  void Prefetch() const {
    const char* p = reinterpret_cast<const char*>(slots_.data());
    const char* end = reinterpret_cast<const char*>(slots_.data() + slots_.size());
    for (int lines = 0; p < end && lines < 16; p += 64, ++lines) __builtin_prefetch(p);
  }

 private:
  std::vector<std::pair<int, AggregateState>> slots_;  // ascending by slot
};

}  // namespace nudge::profile
