// ImageCache: rendered images by (template id, version, texts, format), LRU bounded in bytes.
#include "content/image/image.h"
#include "core/crypto.h"

namespace nudge::content {
namespace {

// Bookkeeping per entry beyond its bytes and key: list node, map slot, shared_ptr blocks.
constexpr size_t kEntryOverhead = 128;

}  // namespace

ImageCache::ImageCache(size_t max_bytes) : max_bytes_(max_bytes) {}

std::string ImageCache::Key(const ImageTemplate& tmpl, const std::vector<std::string>& texts,
                            ImageFormat format) {
  // Each text with its length first, so ["ab", "c"] and ["a", "bc"] differ.
  std::string joined;
  for (const std::string& text : texts) {
    joined += std::to_string(text.size());
    joined += ':';
    joined += text;
  }
  std::string key = tmpl.id();
  key += '\n';
  key += tmpl.version();
  key += '\n';
  key += core::Sha256Hex(joined);
  key += '.';
  key += ImageFormatName(format);
  return key;
}

std::shared_ptr<const EncodedImage> ImageCache::Find(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->image;
}

void ImageCache::Insert(std::string key, std::shared_ptr<const EncodedImage> image) {
  const size_t cost = image->bytes.size() + key.size() + kEntryOverhead;
  if (cost > max_bytes_) return;
  std::lock_guard lock(mutex_);
  if (index_.count(key) != 0) return;  // another thread rendered it meanwhile
  while (!lru_.empty() && stats_.bytes + cost > max_bytes_) {
    Entry& last = lru_.back();
    index_.erase(last.key);
    stats_.bytes -= last.cost;
    ++stats_.evictions;
    lru_.pop_back();
  }
  lru_.push_front(Entry{std::move(key), std::move(image), cost});
  index_.emplace(lru_.front().key, lru_.begin());
  stats_.bytes += cost;
  stats_.entries = lru_.size();
}

Result<std::shared_ptr<const EncodedImage>> ImageCache::Render(const ImageTemplate& tmpl,
                                                               const LayerTextFn& texts,
                                                               std::optional<ImageFormat> format) {
  NUDGE_ASSIGN_OR_RETURN(std::vector<std::string> rendered, RenderLayerTexts(tmpl, texts));
  const ImageFormat f = format.value_or(tmpl.default_format());
  std::string key = Key(tmpl, rendered, f);
  if (auto hit = Find(key)) return hit;
  NUDGE_ASSIGN_OR_RETURN(EncodedImage image, RenderImage(tmpl, rendered, f));
  auto shared = std::make_shared<const EncodedImage>(std::move(image));
  Insert(std::move(key), shared);
  return shared;
}

ImageCache::Stats ImageCache::stats() const {
  std::lock_guard lock(mutex_);
  Stats s = stats_;
  s.entries = lru_.size();
  return s;
}

void ImageCache::Clear() {
  std::lock_guard lock(mutex_);
  index_.clear();
  lru_.clear();
  stats_.bytes = 0;
  stats_.entries = 0;
}

}  // namespace nudge::content
