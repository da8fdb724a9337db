// What an ImageTemplate holds: its settings, layers and decoded assets. Immutable once
// ParseImageTemplate returns it, apart from the fallback conversions made on first use (each
// guarded by its own once_flag).
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "content/image/image.h"
#include "content/image/internal/raster.h"

namespace nudge::content::internal {

struct ImageTemplateData {
  std::string id;
  std::string version;
  ImageFormat format = ImageFormat::kPng;
  int quality = 85;
  std::vector<ImageLayer> layers;

  std::string base_bytes;  // the base file, empty for a canvas
  std::shared_ptr<const Raster> base;

  // The fallback as a file (the `fallback` asset, else the base file) and decoded; for a canvas
  // template without `fallback`, `fallback_file` is the canvas encoded as PNG.
  EncodedImage fallback_file;
  std::shared_ptr<const Raster> fallback;
  mutable std::array<std::once_flag, 3> fallback_once;
  mutable std::array<EncodedImage, 3> fallback_converted;
};

}  // namespace nudge::content::internal
