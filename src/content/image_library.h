// ImageLibrary: every workspace's image templates (content/image/image.h), with the assets they
// brought, compiled and kept in memory, persisted in the store (definitions of kind "image"; the
// body is {"yaml": "...", "assets": {"hero.png": "<base64>"}}) and rendered for a contact with
// a bounded cache in front.
//
// Assets are written under ROOT/<workspace>/<id>/<hash of the stored body>/ (the directory the
// template's `base`, `fallback` and `font_file` are read from); a template is always parsed from
// its stored body, so the directory can be removed at any time and is remade on the next start.
//
// Thread-safe: Put and Delete swap immutable entries under a mutex; Render runs on any thread.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "content/image/image.h"
#include "content/liquid.h"
#include "core/clock.h"
#include "store/store.h"

namespace nudge::content {

struct ImageInfo {
  std::string id;
  std::shared_ptr<const ImageTemplate> tmpl;
  std::vector<std::shared_ptr<const Template>> layers;  // each layer's Liquid, compiled
  std::vector<std::string> assets;                      // file names
  std::string yaml;
  int64_t version = 0;
  core::Millis updated_at = 0;
  nlohmann::json ToJson() const;  // id, version, updated_at, width, height, format, assets, yaml
};

// The largest body of an image template with its assets (PUT /api/v1/images/{id}).
inline constexpr size_t kMaxImageDefinitionBytes = size_t{16} << 20;

class ImageLibrary {
 public:
  ImageLibrary(store::Store& store, std::filesystem::path asset_root, const core::Clock& clock,
               size_t cache_bytes = size_t{64} << 20);
  ~ImageLibrary();

  // Reads every workspace's image templates from the store (start-up). One that no longer
  // parses (a font removed from the machine) is logged and left out.
  Status Load();

  // Stores an image template: `body` is {"yaml": TEXT, "assets": {NAME: BASE64, ...}}. Asset
  // names are plain file names (letters, digits, '.', '_', '-'). Errors: kInvalidArgument naming
  // the field, or the YAML's "images/<id>.yaml:line:column"; nothing is stored then.
  Result<ImageInfo> Put(store::WorkspaceId ws, const nlohmann::json& body, const std::string& id);
  Result<bool> Delete(store::WorkspaceId ws, const std::string& id);
  std::optional<ImageInfo> Get(store::WorkspaceId ws, const std::string& id) const;
  std::vector<ImageInfo> List(store::WorkspaceId ws) const;

  struct Rendered {
    std::shared_ptr<const EncodedImage> image;
    bool fallback = false;  // rendering failed: the template's fallback image
    std::string error;      // why, when fallback
  };
  // Renders image `id` for this Liquid context (contact, message, workspace) in `format` (the
  // template's default when absent). When rendering fails the template's fallback comes back.
  // Errors: kNotFound for an unknown image.
  Result<Rendered> Render(store::WorkspaceId ws, const std::string& id, const Context& context,
                          std::optional<ImageFormat> format);

  ImageCache::Stats cache_stats() const { return cache_.stats(); }

 private:
  // `text` is the body as stored; its hash names the directory of the assets.
  Result<ImageInfo> Parse(store::WorkspaceId ws, const std::string& id, const nlohmann::json& body,
                          std::string_view text, int64_t version) const;
  std::filesystem::path AssetDir(store::WorkspaceId ws, const std::string& id,
                                 std::string_view stored) const;
  // Removes the asset directories of a template's other versions than `keep`.
  static void RemoveOtherVersions(const std::filesystem::path& keep);

  store::Store& store_;
  const std::filesystem::path root_;
  const core::Clock& clock_;
  ImageCache cache_;
  // Held by Put and Delete from start to end: one saves its directory while no other is
  // removing the versions it does not keep.
  std::mutex writes_mutex_;
  mutable std::mutex mutex_;
  std::map<store::WorkspaceId, std::map<std::string, ImageInfo>> images_;  // GUARDED_BY(mutex_)
};

}  // namespace nudge::content
