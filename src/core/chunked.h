// Chunked: objects by a dense integer id, stored in place in chunks of 4,096. One memory access
// finds one (a table of pointers takes two), a reference stays valid as more are added, and ids
// never touched cost nothing beyond their chunk. Whether a slot holds something is the
// caller's to say (a field of T); slots of a new chunk are default-constructed.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace nudge::core {

template <typename T>
class Chunked {
 public:
  static constexpr size_t kShift = 12, kChunk = size_t{1} << kShift;

  // The slot of id, or null when its chunk was never made.
  T* Find(size_t id) const {
    const size_t c = id >> kShift;
    return c < chunks_.size() && chunks_[c] ? &chunks_[c][id & (kChunk - 1)] : nullptr;
  }
  // The slot of id, making its chunk when needed.
  T& Make(size_t id) {
    const size_t c = id >> kShift;
    if (c >= chunks_.size()) chunks_.resize(c + 1);
    if (!chunks_[c]) chunks_[c] = std::make_unique<T[]>(kChunk);
    return chunks_[c][id & (kChunk - 1)];
  }
  // f(id, slot) for every slot of every chunk made, in ascending id order.
  template <typename F>
  void ForEach(F f) const {
    for (size_t c = 0; c < chunks_.size(); ++c)
      if (chunks_[c])
        for (size_t i = 0; i < kChunk; ++i) f(c * kChunk + i, chunks_[c][i]);
  }
  // One past the highest id a slot exists for.
  size_t bound() const { return chunks_.size() * kChunk; }
  // The chunks' own memory (what the slots hold elsewhere is not counted).
  size_t MemoryBytes() const {
    size_t n = chunks_.capacity() * sizeof(chunks_[0]);
    for (const auto& c : chunks_)
      if (c) n += kChunk * sizeof(T);
    return n;
  }
  void Clear() { chunks_.clear(); }

 private:
  std::vector<std::unique_ptr<T[]>> chunks_;
};

}  // namespace nudge::core
