#include "content/image/internal/raster.h"

#include <fontconfig/fontconfig.h>
#include <pango/pangocairo.h>
#include <pango/pangofc-fontmap.h>
#include <qrencode.h>
#include <vips/vips.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

namespace nudge::content::internal {
namespace {

// libvips reports errors into a process-wide buffer; take its text and clear it.
std::string VipsError(std::string_view what) {
  std::string msg(what);
  const char* buffer = vips_error_buffer();
  if (buffer != nullptr && *buffer != '\0') {
    std::string text(buffer);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    for (char& c : text)
      if (c == '\n') c = ';';
    msg += ": " + text;
  }
  vips_error_clear();
  return msg;
}

// Owns one reference to a VipsImage.
class Img {
 public:
  Img() = default;
  explicit Img(VipsImage* image) : image_(image) {}
  ~Img() { Reset(); }
  Img(Img&& other) noexcept : image_(std::exchange(other.image_, nullptr)) {}
  Img& operator=(Img&& other) noexcept {
    if (this != &other) {
      Reset();
      image_ = std::exchange(other.image_, nullptr);
    }
    return *this;
  }
  static Img Ref(VipsImage* image) {
    g_object_ref(image);
    return Img(image);
  }
  VipsImage* get() const { return image_; }
  VipsImage** out() {
    Reset();
    return &image_;
  }
  VipsImage* release() { return std::exchange(image_, nullptr); }
  void Reset() {
    if (image_ != nullptr) g_object_unref(image_);
    image_ = nullptr;
  }

 private:
  VipsImage* image_ = nullptr;
};

// A step of a pipeline: `op` writes into *out and returns 0, or fails.
template <typename Op>
Status Step(Img& img, std::string_view what, Op op) {
  Img out;
  if (op(img.get(), out.out()) != 0) return Status::Internal(VipsError(what));
  img = std::move(out);
  return Status::Ok();
}

Status SetSrgb(Img& img) {
  return Step(img, "image interpretation", [](VipsImage* in, VipsImage** out) {
    return vips_copy(in, out, "interpretation", VIPS_INTERPRETATION_sRGB, nullptr);
  });
}

// Converts any decoded image to 8-bit sRGB with 3 or 4 bands.
Status Normalise(Img& img) {
  VipsImage* in = img.get();
  if (vips_image_get_typeof(in, VIPS_META_ICC_NAME) != 0) {
    // An embedded profile (Display P3, Adobe RGB, CMYK): convert to sRGB through it. A broken
    // profile is ignored and the pixels taken as they are.
    Img out;
    if (vips_icc_transform(in, out.out(), "srgb", "embedded", TRUE, "depth", 8, nullptr) == 0)
      img = std::move(out);
    else
      vips_error_clear();
  }
  const VipsInterpretation interpretation = vips_image_guess_interpretation(img.get());
  if (interpretation != VIPS_INTERPRETATION_sRGB ||
      vips_image_get_format(img.get()) != VIPS_FORMAT_UCHAR) {
    NUDGE_TRY(Step(img, "colour conversion", [](VipsImage* i, VipsImage** o) {
      return vips_colourspace(i, o, VIPS_INTERPRETATION_sRGB, nullptr);
    }));
  }
  if (vips_image_get_format(img.get()) != VIPS_FORMAT_UCHAR) {
    NUDGE_TRY(Step(img, "8-bit conversion",
                   [](VipsImage* i, VipsImage** o) { return vips_cast_uchar(i, o, nullptr); }));
  }
  const int bands = vips_image_get_bands(img.get());
  if (bands > 4) {
    NUDGE_TRY(Step(img, "band selection", [](VipsImage* i, VipsImage** o) {
      return vips_extract_band(i, o, 0, "n", 4, nullptr);
    }));
  } else if (bands < 3) {
    return Status::Invalid("the image has " + std::to_string(bands) + " band(s) after conversion");
  }
  return SetSrgb(img);
}

// --- fonts -----------------------------------------------------------------------------------

// A font file a template brings gets a fontconfig configuration of its own: the system's fonts
// and that one file. Only the layers that name the file draw with it; the process's default
// configuration, which `font:` is checked against and draws with, holds the system's fonts
// alone. (Added to the default configuration, one workspace's font was usable by name in every
// other one, two files declaring one family drew alike, and a template naming another's font
// was refused when the server started again and loaded it first.)
struct FontFile {
  FcConfig* config = nullptr;  // one reference, held by the registry
  uint64_t generation = 0;     // new for each configuration the path has had
  size_t content = 0;          // hash of the file's bytes when the configuration was made
};
std::mutex font_files_mutex;
std::map<std::string, FontFile, std::less<>> font_files;  // GUARDED_BY(font_files_mutex)
uint64_t font_files_generation = 0;                       // GUARDED_BY(font_files_mutex)

// The configuration drawing with the font file at `path` and its generation; null when the
// path was never registered.
std::pair<FcConfig*, uint64_t> FontFileConfig(std::string_view path) {
  std::lock_guard lock(font_files_mutex);
  auto it = font_files.find(path);
  if (it == font_files.end()) return {nullptr, 0};
  FcConfigReference(it->second.config);
  return {it->second.config, it->second.generation};
}

// One Pango font map and context. Pango objects are not thread-safe: each thread has its own
// set (one for the default configuration, one per font file it drew with), so renders never
// wait for each other.
class ThreadPango {
 public:
  ThreadPango() = default;
  ThreadPango(const ThreadPango&) = delete;
  ThreadPango& operator=(const ThreadPango&) = delete;
  ~ThreadPango() { Reset(); }
  // `config` null: fontconfig's default configuration.
  PangoContext* Context(FcConfig* config, uint64_t generation) {
    if (context_ != nullptr && generation == generation_) return context_;
    Reset();
    map_ = pango_cairo_font_map_new();
    if (config != nullptr) pango_fc_font_map_set_config(PANGO_FC_FONT_MAP(map_), config);
    context_ = pango_font_map_create_context(map_);
    // Fixed rendering options, so images do not depend on the machine's fontconfig settings.
    cairo_font_options_t* options = cairo_font_options_create();
    cairo_font_options_set_antialias(options, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(options, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF);
    pango_cairo_context_set_font_options(context_, options);
    cairo_font_options_destroy(options);
    pango_context_set_language(context_, pango_language_from_string("en"));
    generation_ = generation;
    return context_;
  }

 private:
  void Reset() {
    if (context_ != nullptr) g_object_unref(context_);
    if (map_ != nullptr) g_object_unref(map_);
    context_ = nullptr;
    map_ = nullptr;
  }
  PangoFontMap* map_ = nullptr;
  PangoContext* context_ = nullptr;
  uint64_t generation_ = 0;
};

// This thread's context for a layer: its font file's, or the default one.
PangoContext* ThreadContext(const std::string& font_file) {
  thread_local ThreadPango fallback;
  thread_local std::map<std::string, ThreadPango, std::less<>> per_file;
  if (!font_file.empty()) {
    auto [config, generation] = FontFileConfig(font_file);
    if (config != nullptr) {
      PangoContext* context = per_file[font_file].Context(config, generation);
      FcConfigDestroy(config);  // the font map holds its own reference
      return context;
    }
  }
  return fallback.Context(nullptr, 0);
}

struct LayoutDeleter {
  void operator()(PangoLayout* layout) const { g_object_unref(layout); }
};
using LayoutPtr = std::unique_ptr<PangoLayout, LayoutDeleter>;

struct FontDescDeleter {
  void operator()(PangoFontDescription* desc) const { pango_font_description_free(desc); }
};
using FontDescPtr = std::unique_ptr<PangoFontDescription, FontDescDeleter>;

// --- text layout -----------------------------------------------------------------------------

constexpr const char* kEllipsis = "\xE2\x80\xA6";       // U+2026
constexpr const char* kLineSeparator = "\xE2\x80\xA8";  // U+2028

// The text as Pango gets it. Line ends are normalised; when wrapping, they become line
// separators, so the whole text is one paragraph and a line limit counts every line (Pango
// counts a limit per paragraph, and does not mark text dropped at a paragraph's end).
std::string PrepareText(std::string_view text, bool wrap) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      c = '\n';
    }
    if (c == '\n' && wrap) {
      out += kLineSeparator;
    } else if (c == '\t') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

int LineCount(PangoLayout* layout) { return pango_layout_get_line_count(layout); }

// How many of the layout's lines fit in `height` pixels (at least one).
int LinesThatFit(PangoLayout* layout, int height) {
  PangoLayoutIter* iter = pango_layout_get_iter(layout);
  int fit = 0;
  do {
    PangoRectangle logical;
    pango_layout_iter_get_line_extents(iter, nullptr, &logical);
    if (PANGO_PIXELS_CEIL(logical.y + logical.height) > height) break;
    ++fit;
  } while (pango_layout_iter_next_line(iter));
  pango_layout_iter_free(iter);
  return std::max(fit, 1);
}

struct Laid {
  LayoutPtr layout;
  TextFit fit;
  bool fits = false;  // nothing cut: every line shown, none ellipsized
};

// Lays the text out at one size: wrapped to the box's width, cut (with an ellipsis) after
// max_lines or the last line the box's height holds.
Laid LayOut(const ImageLayer& layer, const std::string& prepared, double size) {
  Laid laid;
  laid.layout.reset(pango_layout_new(ThreadContext(layer.font_file)));
  PangoLayout* layout = laid.layout.get();
  FontDescPtr desc(pango_font_description_from_string(layer.font.c_str()));
  pango_font_description_set_absolute_size(desc.get(), size * PANGO_SCALE);
  pango_layout_set_font_description(layout, desc.get());
  pango_layout_set_width(layout, layer.box.width * PANGO_SCALE);
  pango_layout_set_wrap(layout, PANGO_WRAP_WORD_CHAR);
  pango_layout_set_alignment(layout, layer.align == HAlign::kLeft     ? PANGO_ALIGN_LEFT
                                     : layer.align == HAlign::kCenter ? PANGO_ALIGN_CENTER
                                                                      : PANGO_ALIGN_RIGHT);
  // Without wrapping, each line of the text is one line, ellipsized when too wide.
  pango_layout_set_ellipsize(layout, layer.wrap ? PANGO_ELLIPSIZE_NONE : PANGO_ELLIPSIZE_END);
  pango_layout_set_text(layout, prepared.c_str(), static_cast<int>(prepared.size()));

  int allowed = LinesThatFit(layout, layer.box.height);
  if (layer.max_lines > 0) allowed = std::min(allowed, layer.max_lines);
  const int lines = LineCount(layout);
  bool cut = false;
  if (lines > allowed) {
    // Keep the text of the first `allowed` lines and end it with an ellipsis. (Pango's own
    // ellipsizing would not mark a cut that falls on a line break.) When wrapping, the
    // ellipsis may not fit on the last line: Pango then ellipsizes that line.
    cut = true;
    PangoLayoutLine* last = pango_layout_get_line_readonly(layout, allowed - 1);
    std::string kept = prepared.substr(0, static_cast<size_t>(last->start_index + last->length));
    while (true) {  // drop the line break and spaces the kept text ends with
      if (!kept.empty() && (kept.back() == ' ' || kept.back() == '\n')) {
        kept.pop_back();
      } else if (kept.ends_with(kLineSeparator)) {
        kept.resize(kept.size() - std::strlen(kLineSeparator));
      } else {
        break;
      }
    }
    kept += kEllipsis;
    pango_layout_set_text(layout, kept.c_str(), static_cast<int>(kept.size()));
    if (layer.wrap) {
      pango_layout_set_ellipsize(layout, PANGO_ELLIPSIZE_END);
      pango_layout_set_height(layout, -allowed);
    }
  }
  PangoRectangle logical;
  pango_layout_get_pixel_extents(layout, nullptr, &logical);
  laid.fit.lines = LineCount(layout);
  laid.fit.ellipsized = cut || pango_layout_is_ellipsized(layout);
  laid.fit.size = size;
  laid.fit.height = logical.height;
  laid.fits = !laid.fit.ellipsized;
  return laid;
}

// The layout to draw: at the layer's size, or with shrink_to_fit the largest whole-pixel size
// down to min_size at which nothing is cut.
Laid LayOutText(const ImageLayer& layer, std::string_view text) {
  const std::string prepared = PrepareText(text, layer.wrap);
  Laid laid = LayOut(layer, prepared, layer.size);
  if (laid.fits || !layer.shrink_to_fit) return laid;
  int lo = static_cast<int>(std::ceil(layer.min_size));
  int hi = static_cast<int>(std::ceil(layer.size)) - 1;
  std::optional<Laid> best;
  while (lo <= hi) {  // the largest size that fits: fitting is monotonic in the size
    const int mid = lo + (hi - lo) / 2;
    Laid at = LayOut(layer, prepared, mid);
    if (at.fits) {
      best = std::move(at);
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (best) return std::move(*best);
  return LayOut(layer, prepared, layer.min_size);
}

// An RGBA image of `width` x `height` whose pixels are `color` with `coverage` as alpha.
Result<Img> Colourise(const uint8_t* coverage, int width, int height, size_t stride, Rgba color) {
  std::string rgba(static_cast<size_t>(width) * height * 4, '\0');
  uint8_t* out = reinterpret_cast<uint8_t*>(rgba.data());
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = coverage + y * stride;
    for (int x = 0; x < width; ++x, out += 4) {
      out[0] = color.r;
      out[1] = color.g;
      out[2] = color.b;
      out[3] = static_cast<uint8_t>((row[x] * color.a + 127) / 255);
    }
  }
  Img img(vips_image_new_from_memory_copy(rgba.data(), rgba.size(), width, height, 4,
                                          VIPS_FORMAT_UCHAR));
  if (img.get() == nullptr) return Err(Status::Internal(VipsError("text image")));
  NUDGE_TRY(SetSrgb(img));
  return img;
}

// An overlay and where it goes in its layer's box.
struct Drawn {
  Img img;
  int dx = 0, dy = 0;
};

// The text layer as an RGBA image of the part of its box the text covers (blending costs in
// proportion to the overlay's area); nullopt when there is nothing to draw.
Result<std::optional<Drawn>> DrawText(const ImageLayer& layer, std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::optional<Drawn>();
  const int width = layer.box.width, height = layer.box.height;
  Laid laid = LayOutText(layer, text);
  PangoRectangle ink, logical;
  pango_layout_get_pixel_extents(laid.layout.get(), &ink, &logical);
  int y = 0;  // the top of the lines in the box
  switch (layer.valign) {
    case VAlign::kTop:
      y = 0;
      break;
    case VAlign::kMiddle:
      y = (height - logical.height) / 2;
      break;
    case VAlign::kBottom:
      y = height - logical.height;
      break;
  }
  if (logical.height > height) y = 0;  // too tall even cut: keep the first line visible
  const int origin_y = y - logical.y;
  // The inked area in box coordinates, a pixel wider for anti-aliasing, clipped to the box.
  const int x0 = std::max(0, ink.x - 1), y0 = std::max(0, origin_y + ink.y - 1);
  const int x1 = std::min(width, ink.x + ink.width + 1);
  const int y1 = std::min(height, origin_y + ink.y + ink.height + 1);
  if (x1 <= x0 || y1 <= y0) return std::optional<Drawn>();
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_A8, x1 - x0, y1 - y0);
  if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(surface);
    return Err(Status::Internal("cairo could not make a " + std::to_string(x1 - x0) + "x" +
                                std::to_string(y1 - y0) + " surface"));
  }
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgba(cr, 0, 0, 0, 1);
  cairo_move_to(cr, -x0, origin_y - y0);
  pango_cairo_show_layout(cr, laid.layout.get());
  cairo_destroy(cr);
  cairo_surface_flush(surface);
  auto img = Colourise(cairo_image_surface_get_data(surface), x1 - x0, y1 - y0,
                       static_cast<size_t>(cairo_image_surface_get_stride(surface)), layer.color);
  cairo_surface_destroy(surface);
  if (!img) return Err(img.error());
  return std::optional<Drawn>(Drawn{std::move(*img), x0, y0});
}

// --- QR codes --------------------------------------------------------------------------------

constexpr int kQuietZone = 4;  // modules of light margin around the code (ISO/IEC 18004)

struct QrDeleter {
  void operator()(QRcode* code) const { QRcode_free(code); }
};

struct QrInputDeleter {
  void operator()(QRinput* input) const { QRinput_free(input); }
};

// ASCII text in the most compact modes; other text as UTF-8 bytes behind an ECI header
// (designator 26, UTF-8), so readers do not guess another character set.
QRcode* EncodeQr(std::string_view text, QRecLevel level) {
  const bool ascii = std::all_of(text.begin(), text.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) return QRcode_encodeString(std::string(text).c_str(), 0, level, QR_MODE_8, 1);
  std::unique_ptr<QRinput, QrInputDeleter> input(QRinput_new2(0, level));
  if (!input || QRinput_appendECIheader(input.get(), 26) != 0 ||
      QRinput_append(input.get(), QR_MODE_8, static_cast<int>(text.size()),
                     reinterpret_cast<const unsigned char*>(text.data())) != 0)
    return nullptr;
  return QRcode_encodeInput(input.get());
}

// The QR code as an RGBA image (quiet zone included) scaled by a whole factor, nearest
// neighbour, to the largest square that fits the box; with its offset inside the box.
Result<Img> DrawQr(const ImageLayer& layer, std::string_view text, int* dx, int* dy) {
  if (text.empty()) return Err(Status::Invalid("the QR code's text is empty"));
  if (text.find('\0') != std::string_view::npos)
    return Err(Status::Invalid("the QR code's text contains a NUL byte"));
  QRecLevel level = QR_ECLEVEL_M;
  switch (layer.error_correction) {
    case QrErrorCorrection::kLow:
      level = QR_ECLEVEL_L;
      break;
    case QrErrorCorrection::kMedium:
      level = QR_ECLEVEL_M;
      break;
    case QrErrorCorrection::kQuartile:
      level = QR_ECLEVEL_Q;
      break;
    case QrErrorCorrection::kHigh:
      level = QR_ECLEVEL_H;
      break;
  }
  std::unique_ptr<QRcode, QrDeleter> code(EncodeQr(text, level));
  if (!code) {
    if (errno == ERANGE)
      return Err(Status(Code::kTooLarge, "the QR code's text is too long (" +
                                             std::to_string(text.size()) + " bytes)"));
    return Err(Status::Internal(std::string("libqrencode failed: ") + std::strerror(errno)));
  }
  const int modules = code->width + 2 * kQuietZone;
  const int scale = std::min(layer.box.width, layer.box.height) / modules;
  if (scale < 1)
    return Err(Status::Invalid("the QR code needs " + std::to_string(modules) + "x" +
                               std::to_string(modules) + " pixels; its box is " +
                               std::to_string(layer.box.width) + "x" +
                               std::to_string(layer.box.height)));
  std::string rgba(static_cast<size_t>(modules) * modules * 4, '\0');
  for (int y = 0; y < modules; ++y) {
    for (int x = 0; x < modules; ++x) {
      const int mx = x - kQuietZone, my = y - kQuietZone;
      const bool dark = mx >= 0 && my >= 0 && mx < code->width && my < code->width &&
                        (code->data[my * code->width + mx] & 1) != 0;
      const Rgba c = dark ? layer.color : layer.background;
      char* p = rgba.data() + (static_cast<size_t>(y) * modules + x) * 4;
      p[0] = static_cast<char>(c.r);
      p[1] = static_cast<char>(c.g);
      p[2] = static_cast<char>(c.b);
      p[3] = static_cast<char>(c.a);
    }
  }
  Img img(vips_image_new_from_memory_copy(rgba.data(), rgba.size(), modules, modules, 4,
                                          VIPS_FORMAT_UCHAR));
  if (img.get() == nullptr) return Err(Status::Internal(VipsError("QR image")));
  NUDGE_TRY(Step(img, "QR scaling", [scale](VipsImage* in, VipsImage** out) {
    return vips_zoom(in, out, scale, scale, nullptr);
  }));
  NUDGE_TRY(SetSrgb(img));
  const int side = modules * scale;
  *dx = (layer.box.width - side) / 2;
  *dy = (layer.box.height - side) / 2;
  return img;
}

}  // namespace

// --- Raster ----------------------------------------------------------------------------------

Raster::Raster(_VipsImage* image) : image_(image) {}
Raster::~Raster() {
  if (image_ != nullptr) g_object_unref(image_);
}
int Raster::width() const { return vips_image_get_width(image_); }
int Raster::height() const { return vips_image_get_height(image_); }
bool Raster::has_alpha() const { return vips_image_get_bands(image_) == 4; }

Status InitImaging() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] {
    if (VIPS_INIT("nudge") != 0) {
      status = Status::Internal(VipsError("libvips did not start"));
      return;
    }
    // Damaged input is reported as an error where it matters; libvips's warnings about it
    // would only reach stderr.
    g_log_set_handler(
        "VIPS", static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE),
        [](const gchar*, GLogLevelFlags, const gchar*, gpointer) {}, nullptr);
    vips_cache_set_max(0);
    vips_block_untrusted_set(TRUE);
    if (std::getenv("VIPS_CONCURRENCY") == nullptr) vips_concurrency_set(1);
    FcInit();
  });
  return status;
}

std::optional<ImageFormat> SniffImageFormat(std::string_view b) {
  if (b.size() >= 8 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8))
    return ImageFormat::kPng;
  if (b.size() >= 3 && b.substr(0, 3) == "\xFF\xD8\xFF") return ImageFormat::kJpeg;
  if (b.size() >= 12 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP")
    return ImageFormat::kWebp;
  return std::nullopt;
}

Result<std::shared_ptr<const Raster>> DecodeImage(std::string_view bytes) {
  NUDGE_TRY(InitImaging());
  const auto format = SniffImageFormat(bytes);
  if (!format) return Err(Status::Invalid("not a PNG, JPEG or WebP image"));
  void* data = const_cast<char*>(bytes.data());
  Img img;
  int rc = -1;
  switch (*format) {
    case ImageFormat::kPng:
      rc = vips_pngload_buffer(data, bytes.size(), img.out(), "fail_on", VIPS_FAIL_ON_ERROR,
                               nullptr);
      break;
    case ImageFormat::kJpeg:
      rc = vips_jpegload_buffer(data, bytes.size(), img.out(), "fail_on", VIPS_FAIL_ON_ERROR,
                                nullptr);
      break;
    case ImageFormat::kWebp:
      rc = vips_webpload_buffer(data, bytes.size(), img.out(), "fail_on", VIPS_FAIL_ON_ERROR,
                                nullptr);
      break;
  }
  if (rc != 0) return Err(Status::Invalid(VipsError("unreadable image")));
  const int w = vips_image_get_width(img.get()), h = vips_image_get_height(img.get());
  if (w > kMaxSide || h > kMaxSide || int64_t{w} * h > kMaxPixels)
    return Err(Status::Invalid("the image is " + std::to_string(w) + "x" + std::to_string(h) +
                               "; at most " + std::to_string(kMaxSide) + " pixels a side and " +
                               std::to_string(kMaxPixels / 1000000) + " megapixels"));
  if (*format == ImageFormat::kJpeg) {
    NUDGE_TRY(Step(img, "orientation",
                   [](VipsImage* in, VipsImage** out) { return vips_autorot(in, out, nullptr); }));
  }
  Status normalised = Normalise(img);
  if (!normalised.ok()) return Err(Status::Invalid("unreadable image: " + normalised.message()));
  // Decode now: a damaged file is found here, and renders read memory.
  Img memory(vips_image_copy_memory(img.get()));
  if (memory.get() == nullptr) return Err(Status::Invalid(VipsError("unreadable image")));
  return std::shared_ptr<const Raster>(std::make_shared<Raster>(memory.release()));
}

Result<std::shared_ptr<const Raster>> MakeCanvas(int width, int height, Rgba background) {
  NUDGE_TRY(InitImaging());
  const int bands = background.a == 255 ? 3 : 4;
  Img img;
  if (vips_black(img.out(), width, height, "bands", bands, nullptr) != 0)
    return Err(Status::Internal(VipsError("canvas")));
  double a[4] = {0, 0, 0, 0};
  double b[4] = {double(background.r), double(background.g), double(background.b),
                 double(background.a)};
  NUDGE_TRY(Step(img, "canvas", [&](VipsImage* in, VipsImage** out) {
    return vips_linear(in, out, a, b, bands, "uchar", TRUE, nullptr);
  }));
  NUDGE_TRY(SetSrgb(img));
  Img memory(vips_image_copy_memory(img.get()));
  if (memory.get() == nullptr) return Err(Status::Internal(VipsError("canvas")));
  return std::shared_ptr<const Raster>(std::make_shared<Raster>(memory.release()));
}

namespace {

Result<EncodedImage> Encode(Img img, ImageFormat format, int quality) {
  if (format == ImageFormat::kJpeg && vips_image_get_bands(img.get()) == 4) {
    NUDGE_TRY(Step(img, "flattening", [](VipsImage* in, VipsImage** out) {
      VipsArrayDouble* white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
      const int rc = vips_flatten(in, out, "background", white, nullptr);
      vips_area_unref(VIPS_AREA(white));
      return rc;
    }));
    if (vips_image_get_format(img.get()) != VIPS_FORMAT_UCHAR) {
      NUDGE_TRY(Step(img, "8-bit conversion",
                     [](VipsImage* i, VipsImage** o) { return vips_cast_uchar(i, o, nullptr); }));
    }
  }
  void* buffer = nullptr;
  size_t length = 0;
  int rc = -1;
  switch (format) {
    case ImageFormat::kPng:
      rc = vips_pngsave_buffer(img.get(), &buffer, &length, "compression", 6, "strip", TRUE,
                               nullptr);
      break;
    case ImageFormat::kJpeg:
      rc = vips_jpegsave_buffer(img.get(), &buffer, &length, "Q", quality, "strip", TRUE, nullptr);
      break;
    case ImageFormat::kWebp:
      rc = vips_webpsave_buffer(img.get(), &buffer, &length, "Q", quality, "strip", TRUE, nullptr);
      break;
  }
  if (rc != 0) {
    g_free(buffer);
    return Err(Status::Internal(VipsError(std::string(ImageFormatName(format)) + " encoding")));
  }
  EncodedImage encoded;
  encoded.bytes.assign(static_cast<const char*>(buffer), length);
  encoded.format = format;
  g_free(buffer);
  return encoded;
}

}  // namespace

Result<EncodedImage> EncodeRaster(const Raster& raster, ImageFormat format, int quality) {
  NUDGE_TRY(InitImaging());
  return Encode(Img::Ref(raster.image()), format, quality);
}

Result<std::string> RegisterFontFile(const std::filesystem::path& path, std::string_view bytes) {
  NUDGE_TRY(InitImaging());
  int count = 0;
  FcPattern* pattern =
      FcFreeTypeQuery(reinterpret_cast<const FcChar8*>(path.c_str()), 0, nullptr, &count);
  if (pattern == nullptr) return Err(Status::Invalid("not a font file (TrueType or OpenType)"));
  FontDescPtr desc(pango_fc_font_description_from_pattern(pattern, FALSE));
  FcPatternDestroy(pattern);
  char* text = pango_font_description_to_string(desc.get());
  std::string description(text);
  g_free(text);

  const size_t content = std::hash<std::string_view>()(bytes);
  std::lock_guard lock(font_files_mutex);
  auto it = font_files.find(path.string());
  if (it != font_files.end() && it->second.content == content) return description;
  FcConfig* config = FcInitLoadConfigAndFonts();
  if (config == nullptr)
    return Err(Status::Internal("fontconfig could not load its configuration"));
  if (!FcConfigAppFontAddFile(config, reinterpret_cast<const FcChar8*>(path.c_str()))) {
    FcConfigDestroy(config);
    return Err(Status::Invalid("fontconfig could not add the font file"));
  }
  FontFile& entry = font_files[path.string()];
  if (entry.config != nullptr) FcConfigDestroy(entry.config);
  entry = FontFile{config, ++font_files_generation, content};
  return description;
}

Status CheckFontInstalled(std::string_view description) {
  NUDGE_TRY(InitImaging());
  FontDescPtr desc(pango_font_description_from_string(std::string(description).c_str()));
  const char* families = pango_font_description_get_family(desc.get());
  if (families == nullptr) return Status::Ok();  // a style only: the default family
  static const std::set<std::string, std::less<>> kGeneric = {
      "sans", "sans-serif", "serif", "monospace", "mono", "cursive", "fantasy", "system-ui"};
  std::string_view rest(families);
  std::vector<std::string> names;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view name = rest.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty()) names.emplace_back(name);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  for (const std::string& name : names) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (kGeneric.count(lower) != 0) return Status::Ok();
    FcPattern* pattern = FcPatternCreate();
    FcPatternAddString(pattern, FC_FAMILY, reinterpret_cast<const FcChar8*>(name.c_str()));
    FcObjectSet* objects = FcObjectSetBuild(FC_FAMILY, nullptr);
    FcFontSet* fonts = FcFontList(nullptr, pattern, objects);
    const bool found = fonts != nullptr && fonts->nfont > 0;
    if (fonts != nullptr) FcFontSetDestroy(fonts);
    FcObjectSetDestroy(objects);
    FcPatternDestroy(pattern);
    if (found) return Status::Ok();
  }
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "'" : ", '") + name + "'";
  return Status::Invalid("font " + list + " is not installed (fc-list lists the installed ones)");
}

std::string ValidUtf8(std::string text) {
  // NUL would end the text early in C APIs: make it visible as U+FFFD like any invalid byte.
  for (size_t at = text.find('\0'); at != std::string::npos; at = text.find('\0', at + 3))
    text.replace(at, 1, "\xEF\xBF\xBD");
  if (g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr)) return text;
  gchar* valid = g_utf8_make_valid(text.data(), static_cast<gssize>(text.size()));
  std::string out(valid);
  g_free(valid);
  return out;
}

Result<TextFit> FitText(const ImageLayer& layer, std::string_view text) {
  NUDGE_TRY(InitImaging());
  return LayOutText(layer, text).fit;
}

Result<EncodedImage> Compose(const Raster& base, const std::vector<ImageLayer>& layers,
                             const std::vector<std::string>& texts, ImageFormat format,
                             int quality) {
  NUDGE_TRY(InitImaging());
  std::vector<Img> overlays;
  std::vector<int> xs, ys;
  for (size_t i = 0; i < layers.size(); ++i) {
    const ImageLayer& layer = layers[i];
    const std::string where = "layers[" + std::to_string(i) + "]";
    if (layer.kind == ImageLayer::Kind::kText) {
      auto drawn = DrawText(layer, texts[i]);
      if (!drawn) return Err(drawn.error().WithPrefix(where));
      if (!*drawn) continue;
      overlays.push_back(std::move((*drawn)->img));
      xs.push_back(layer.box.x + (*drawn)->dx);
      ys.push_back(layer.box.y + (*drawn)->dy);
    } else {
      int dx = 0, dy = 0;
      auto drawn = DrawQr(layer, texts[i], &dx, &dy);
      if (!drawn) return Err(drawn.error().WithPrefix(where));
      overlays.push_back(std::move(*drawn));
      xs.push_back(layer.box.x + dx);
      ys.push_back(layer.box.y + dy);
    }
  }
  // Each overlay is blended with the part of the image under it only, and that part put back:
  // blending the whole image (in float) would cost more than everything else together.
  Img img = Img::Ref(base.image());
  const int bands = vips_image_get_bands(img.get());
  for (size_t i = 0; i < overlays.size(); ++i) {
    VipsImage* overlay = overlays[i].get();
    const int x = xs[i], y = ys[i];
    Img under;
    if (vips_extract_area(img.get(), under.out(), x, y, vips_image_get_width(overlay),
                          vips_image_get_height(overlay), nullptr) != 0)
      return Err(Status::Internal(VipsError("compositing")));
    NUDGE_TRY(Step(under, "compositing", [overlay](VipsImage* in, VipsImage** out) {
      return vips_composite2(in, overlay, out, VIPS_BLEND_MODE_OVER, "compositing_space",
                             VIPS_INTERPRETATION_sRGB, nullptr);
    }));
    NUDGE_TRY(Step(under, "8-bit conversion", [](VipsImage* in, VipsImage** out) {
      return vips_cast_uchar(in, out, nullptr);
    }));
    if (vips_image_get_bands(under.get()) != bands) {
      // An opaque base stays opaque: drop the alpha the overlay brought.
      NUDGE_TRY(Step(under, "band selection", [bands](VipsImage* in, VipsImage** out) {
        return vips_extract_band(in, out, 0, "n", bands, nullptr);
      }));
    }
    VipsImage* part = under.get();
    NUDGE_TRY(Step(img, "compositing", [part, x, y](VipsImage* in, VipsImage** out) {
      return vips_insert(in, part, out, x, y, nullptr);
    }));
  }
  NUDGE_TRY(SetSrgb(img));
  return Encode(std::move(img), format, quality);
}

}  // namespace nudge::content::internal
