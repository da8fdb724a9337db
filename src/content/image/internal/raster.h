// The drawing side of dynamic images: libvips (decode, composite, encode), Pango and Cairo (text),
// libqrencode (QR codes), fontconfig (font files). Only this file's .cc includes their headers.
//
// libvips is initialised once (InitImaging) with its operation cache off (ImageCache keeps whole
// images; vips's cache would keep intermediate ones) and, unless VIPS_CONCURRENCY is set, one
// worker per image: a server renders many images at once on its own threads.
//
// Thread-safety: everything here may be called from any thread. Pango objects live per thread;
// adding a font file to fontconfig excludes renders for that moment (a shared mutex).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "content/image/image.h"
#include "core/result.h"

struct _VipsImage;  // libvips's VipsImage

namespace nudge::content::internal {

// Largest base image or canvas accepted (each side, and in pixels).
inline constexpr int kMaxSide = 8192;
inline constexpr int64_t kMaxPixels = int64_t{4096} * 4096;

// A decoded image held in memory: sRGB, 8 bits per band, 3 bands or 4 (with alpha). Immutable;
// shared by the renders of one template.
class Raster {
 public:
  explicit Raster(_VipsImage* image);  // takes the reference
  ~Raster();
  Raster(const Raster&) = delete;
  Raster& operator=(const Raster&) = delete;

  _VipsImage* image() const { return image_; }
  int width() const;
  int height() const;
  bool has_alpha() const;

 private:
  _VipsImage* image_;
};

// Starts libvips once; later calls return the first call's outcome.
Status InitImaging();

// What kind of image the bytes are, by their signature (PNG, JPEG, WebP); nullopt otherwise.
std::optional<ImageFormat> SniffImageFormat(std::string_view bytes);

// Decodes a PNG, JPEG or WebP file into a Raster (EXIF orientation applied, converted to sRGB).
// Errors (kInvalidArgument, message only): another kind of file, a damaged image, one larger
// than kMaxSide / kMaxPixels.
Result<std::shared_ptr<const Raster>> DecodeImage(std::string_view bytes);

// A plain canvas of one colour.
Result<std::shared_ptr<const Raster>> MakeCanvas(int width, int height, Rgba background);

// Encodes a raster (alpha flattened onto white for JPEG).
Result<EncodedImage> EncodeRaster(const Raster& raster, ImageFormat format, int quality);

// Makes a font file usable by the layers that name it (ImageLayer::font_file): gives it a
// fontconfig configuration of its own, the system's fonts and this file (again when the file's
// bytes changed: `bytes` are the file's, as the caller read them), and returns the Pango
// description that selects it ("Acme Sans Bold"). Other layers, and CheckFontInstalled, never
// see it. Errors: not a font file fontconfig reads.
Result<std::string> RegisterFontFile(const std::filesystem::path& path, std::string_view bytes);

// Whether a Pango font description names an installed family (or a generic one: sans-serif,
// serif, monospace); with a comma-separated list of families, one installed is enough.
Status CheckFontInstalled(std::string_view description);

// The text with NUL bytes and invalid UTF-8 replaced by U+FFFD.
std::string ValidUtf8(std::string text);

// How a text layer's text was laid out in its box.
struct TextFit {
  int lines = 0;            // lines drawn
  bool ellipsized = false;  // some text was cut (and ends in an ellipsis)
  double size = 0;          // the font size used (below the layer's with shrink_to_fit)
  int height = 0;           // pixels the lines take
};
Result<TextFit> FitText(const ImageLayer& layer, std::string_view text);

// Draws every layer over `base` and encodes the result. `texts` holds one text per layer.
Result<EncodedImage> Compose(const Raster& base, const std::vector<ImageLayer>& layers,
                             const std::vector<std::string>& texts, ImageFormat format,
                             int quality);

}  // namespace nudge::content::internal
