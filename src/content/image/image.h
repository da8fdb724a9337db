// Dynamic images: a picture made for each recipient ("Welcome, Ada!" over a hero image, a ticket
// with the attendee's name and a QR code), described by an image template in YAML:
//
//   id: welcome-hero
//   base: hero.png              # PNG, JPEG or WebP beside the YAML; or
//   # canvas: { width: 1200, height: 600, background: "#1d3557" }
//   format: png                 # png | jpg | webp: when the URL does not say
//   quality: 85                 # JPEG and WebP quality, 1..100
//   fallback: hero-fallback.png # served when rendering fails (default: the base image)
//   layers:
//     - text: "Welcome, {{ contact.traits.first_name | default: 'friend' }}!"
//       font: "DejaVu Sans Bold"  # a Pango font description, or font_file: a .ttf/.otf beside
//       size: 48                  # pixels
//       color: "#ffffff"          # #rgb, #rrggbb or #rrggbbaa
//       box: { x: 60, y: 220, width: 1080, height: 160 }
//       align: center             # left | center | right
//       valign: middle            # top | middle | bottom
//       wrap: true                # false: one line per line of the text
//       max_lines: 2              # text past the last line (or the box) ends in an ellipsis
//       shrink_to_fit: false      # true: smaller sizes (down to min_size) before cutting
//       fallback: "Welcome!"      # when the rendered text is blank
//     - qr: "{{ message.view_in_browser_url }}"
//       box: { x: 1000, y: 420, width: 160, height: 160 }
//       color: "#000000"
//       background: "#ffffff"
//       ec: M                     # error correction: L | M | Q | H
//
// The `text` and `qr` values are Liquid that this module does not render: Render asks the
// caller for each layer's text through a LayerTextFn (the product renders the Liquid for the
// contact). Text is always drawn literally: markup in it is never interpreted.
//
// Rendering uses libvips (decoding, compositing, encoding), Pango and Cairo (text) and
// libqrencode (QR codes). An image that cannot be made (a callback error, a QR code too large
// for its box, an encoder failure) is an error; the caller then serves FallbackBytes.
//
// Thread-safety: an ImageTemplate is immutable once parsed (copies share it) and may be rendered
// from any number of threads at once. ImageCache is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"

namespace nudge::content {

enum class ImageFormat { kPng, kJpeg, kWebp };

// "png", "jpg"/"jpeg", "webp" (any case); kInvalidArgument otherwise.
Result<ImageFormat> ParseImageFormat(std::string_view name);
// An image template's id: 1 to 100 letters, digits, '-' and '_' (it names a directory).
bool IsImageTemplateId(std::string_view id);
std::string_view ImageFormatName(ImageFormat format);  // "png", "jpg", "webp"
std::string_view ContentType(ImageFormat format);      // "image/png", ...

// Encoded image bytes, ready to serve.
struct EncodedImage {
  std::string bytes;
  ImageFormat format = ImageFormat::kPng;
  std::string_view content_type() const { return ContentType(format); }
};

struct Rgba {
  uint8_t r = 0, g = 0, b = 0, a = 255;
  bool operator==(const Rgba&) const = default;
};

struct Box {
  int x = 0, y = 0, width = 0, height = 0;
};

enum class HAlign { kLeft, kCenter, kRight };
enum class VAlign { kTop, kMiddle, kBottom };
enum class QrErrorCorrection { kLow, kMedium, kQuartile, kHigh };

struct ImageLayer {
  enum class Kind { kText, kQr };
  Kind kind = Kind::kText;
  std::string source;        // the Liquid of `text` or `qr`
  std::string source_where;  // "images/x.yaml:12:11": where `source` starts, for Liquid errors
  std::string fallback;      // used when the rendered text is blank; may be empty
  Box box;
  Rgba color;  // the text or the QR code's dark modules

  // Text layers.
  std::string font;       // Pango font description: "DejaVu Sans Bold" (also set by font_file)
  std::string font_file;  // absolute path of a font file the template brought, or ""
  double size = 32;       // pixels
  double min_size = 0;    // shrink_to_fit's lower bound (pixels)
  HAlign align = HAlign::kLeft;
  VAlign valign = VAlign::kTop;
  bool wrap = true;
  int max_lines = 0;  // 0: as many as fit in the box
  bool shrink_to_fit = false;

  // QR layers.
  Rgba background{255, 255, 255, 255};  // light modules and the quiet zone
  QrErrorCorrection error_correction = QrErrorCorrection::kMedium;
};

namespace internal {
struct ImageTemplateData;
}

// Checks a layer's Liquid while the template is parsed (the product compiles it). An error's
// `where` ("line:column" counted in the source) is turned into the position in the YAML.
using LayerSourceCheck = std::function<Status(size_t layer, std::string_view source)>;

// A parsed image template with its assets loaded (and decoded) once. Cheap to copy: copies share
// the same immutable data.
class ImageTemplate {
 public:
  const std::string& id() const;
  // Hex SHA-256 of the YAML text, every asset and font file it uses, and the renderer's
  // version: a changed template never serves images cached for the previous one.
  const std::string& version() const;
  ImageFormat default_format() const;
  int quality() const;
  int width() const;
  int height() const;
  const std::vector<ImageLayer>& layers() const;
  // The base image's file bytes; empty for a canvas template.
  const std::string& base_bytes() const;

  // What to serve when rendering fails: the `fallback` asset, else the base image, else the
  // plain canvas, in `format` (converted on first use, then kept). Never fails: if the
  // conversion does, the fallback comes in its own format (check EncodedImage::format).
  const EncodedImage& FallbackBytes(ImageFormat format) const;

  const internal::ImageTemplateData& data() const { return *data_; }

 private:
  friend Result<ImageTemplate> ParseImageTemplate(std::string_view, std::string_view,
                                                  const std::filesystem::path&,
                                                  const LayerSourceCheck&);
  explicit ImageTemplate(std::shared_ptr<const internal::ImageTemplateData> data)
      : data_(std::move(data)) {}
  std::shared_ptr<const internal::ImageTemplateData> data_;
};

// Parses an image template. `source_name` names the document in errors ("images/hero.yaml");
// when it ends in .yaml/.yml its file name must match the id. Assets and font files are read
// from `base_dir` (paths relative to it; absolute paths and `..` out of it are refused).
// Errors: kInvalidArgument with where = "source:line:column": unknown keys, bad colours or
// numbers, a box outside the canvas, a missing or unreadable asset, an image too large, a font
// that is not installed, and the errors of `check` (when given) at their place in the YAML.
// A template without layers is valid (it serves its base image).
Result<ImageTemplate> ParseImageTemplate(std::string_view text, std::string_view source_name,
                                         const std::filesystem::path& base_dir,
                                         const LayerSourceCheck& check = nullptr);

// Reads DIR/images/<id>.yaml: the file's directory is the base_dir, its path the source name.
// Errors: kNotFound for an unreadable file, else those of ParseImageTemplate.
Result<ImageTemplate> LoadImageTemplateFile(const std::filesystem::path& yaml_path,
                                            const LayerSourceCheck& check = nullptr);

// Returns the rendered text of layer `layer` whose Liquid is `source`.
using LayerTextFn = std::function<Result<std::string>(size_t layer, std::string_view source)>;

// The most text one layer may have after rendering (bytes); more is kTooLarge.
inline constexpr size_t kMaxLayerTextBytes = 4096;

// Asks `texts` for every layer's text and applies the layers' fallbacks to blank ones. Invalid
// UTF-8 is replaced (U+FFFD). Errors: the callback's, kTooLarge past kMaxLayerTextBytes.
Result<std::vector<std::string>> RenderLayerTexts(const ImageTemplate& tmpl,
                                                  const LayerTextFn& texts);

// Draws the layers with these (already rendered) texts over the base and encodes the result.
// `texts` has one entry per layer. Errors: kInvalidArgument for a wrong number of texts or a
// QR code that does not fit its box or has no text, kInternal when libvips fails.
Result<EncodedImage> RenderImage(const ImageTemplate& tmpl, const std::vector<std::string>& texts,
                                 ImageFormat format);

// RenderLayerTexts then RenderImage, in the template's default format when none is given.
Result<EncodedImage> Render(const ImageTemplate& tmpl, const LayerTextFn& texts,
                            std::optional<ImageFormat> format = std::nullopt);

// Rendered images kept in memory, least recently used evicted first, bounded in bytes. The key
// is the template's id and version, a hash of the rendered layer texts and the format, so two
// contacts whose texts are the same (same first name) share one image. Thread-safe; concurrent
// misses on the same key may both render (the image is the same).
class ImageCache {
 public:
  explicit ImageCache(size_t max_bytes = size_t{64} << 20);

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    size_t bytes = 0;    // what entries hold now (image bytes plus keys)
    size_t entries = 0;  // images held now
  };

  // The image from the cache, or rendered (and kept, unless larger than the whole cache).
  // Errors: those of RenderLayerTexts and RenderImage; failures are not cached.
  Result<std::shared_ptr<const EncodedImage>> Render(
      const ImageTemplate& tmpl, const LayerTextFn& texts,
      std::optional<ImageFormat> format = std::nullopt);

  Stats stats() const;
  void Clear();

  // The cache key of these rendered texts (exposed for tests and diagnostics).
  static std::string Key(const ImageTemplate& tmpl, const std::vector<std::string>& texts,
                         ImageFormat format);

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const EncodedImage> image;
    size_t cost = 0;
  };
  std::shared_ptr<const EncodedImage> Find(const std::string& key);
  void Insert(std::string key, std::shared_ptr<const EncodedImage> image);

  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // GUARDED_BY(mutex_); most recently used first
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // GUARDED_BY(mutex_)
  Stats stats_;                                                             // GUARDED_BY(mutex_)
};

}  // namespace nudge::content
