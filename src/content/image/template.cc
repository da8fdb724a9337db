// Image templates: the YAML, its assets, and the render entry points.
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "content/image/image.h"
#include "content/image/internal/raster.h"
#include "content/image/internal/template_data.h"
#include "core/crypto.h"
#include "core/yaml.h"

namespace nudge::content {
namespace {

namespace fs = std::filesystem;
using core::YamlDoc;

// Part of every template's version: bump it when the same template would draw differently.
constexpr std::string_view kRendererVersion = "nudge-image-1";
constexpr size_t kMaxAssetBytes = size_t{32} << 20;

std::optional<int> HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return std::nullopt;
}

// "#rgb", "#rrggbb" or "#rrggbbaa".
std::optional<Rgba> ParseColor(std::string_view s) {
  if (s.empty() || s[0] != '#') return std::nullopt;
  s.remove_prefix(1);
  std::vector<int> d;
  for (char c : s) {
    auto v = HexDigit(c);
    if (!v) return std::nullopt;
    d.push_back(*v);
  }
  auto byte = [&](size_t i) { return static_cast<uint8_t>(d[i] * 16 + d[i + 1]); };
  switch (d.size()) {
    case 3:
      return Rgba{static_cast<uint8_t>(d[0] * 17), static_cast<uint8_t>(d[1] * 17),
                  static_cast<uint8_t>(d[2] * 17), 255};
    case 6:
      return Rgba{byte(0), byte(2), byte(4), 255};
    case 8:
      return Rgba{byte(0), byte(2), byte(4), byte(6)};
    default:
      return std::nullopt;
  }
}

Result<Rgba> ColorField(const YamlDoc& doc, const YAML::Node& map, const char* key, Rgba def) {
  NUDGE_ASSIGN_OR_RETURN(auto text, core::YamlString(doc, map, key));
  if (!text) return def;
  auto color = ParseColor(*text);
  if (!color)
    return Err(doc.ErrorAt(map[key], key,
                           "expected a colour as #rgb, #rrggbb or #rrggbbaa, got '" + *text + "'"));
  return *color;
}

Result<std::optional<int>> IntField(const YamlDoc& doc, const YAML::Node& map, const char* key,
                                    int min, int max) {
  NUDGE_ASSIGN_OR_RETURN(auto number, core::YamlNumber(doc, map, key));
  if (!number) return std::optional<int>();
  if (*number != std::floor(*number) || *number < min || *number > max)
    return Err(doc.ErrorAt(map[key], key,
                           "expected a whole number from " + std::to_string(min) + " to " +
                               std::to_string(max) + ", got " + map[key].Scalar()));
  return std::optional<int>(static_cast<int>(*number));
}

Result<int> RequiredInt(const YamlDoc& doc, const YAML::Node& map, const char* key, int min,
                        int max) {
  NUDGE_ASSIGN_OR_RETURN(auto value, IntField(doc, map, key, min, max));
  if (!value) return Err(doc.ErrorAt(map, key, "missing"));
  return *value;
}

Result<std::optional<double>> SizeField(const YamlDoc& doc, const YAML::Node& map,
                                        const char* key) {
  NUDGE_ASSIGN_OR_RETURN(auto number, core::YamlNumber(doc, map, key));
  if (number && !(*number >= 1 && *number <= 1000))
    return Err(doc.ErrorAt(map[key], key, "expected a size in pixels from 1 to 1000"));
  return number;
}

// One of `names` (lowercase), as its index.
Result<std::optional<int>> EnumField(const YamlDoc& doc, const YAML::Node& map, const char* key,
                                     std::initializer_list<std::string_view> names) {
  NUDGE_ASSIGN_OR_RETURN(auto text, core::YamlString(doc, map, key));
  if (!text) return std::optional<int>();
  std::string lower = *text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int i = 0;
  std::string list;
  for (auto name : names) {
    if (lower == name) return std::optional<int>(i);
    list += (i++ == 0 ? "" : ", ") + std::string(name);
  }
  return Err(doc.ErrorAt(map[key], key, "expected one of " + list + ", got '" + *text + "'"));
}

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Err(Status::NotFound("cannot read " + path.string()));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct Asset {
  fs::path path;
  std::string bytes;
};

// A file the template names, relative to base_dir and inside it.
Result<Asset> ReadAsset(const YamlDoc& doc, const YAML::Node& node, const char* key,
                        const fs::path& base_dir) {
  const std::string& name = node.Scalar();
  const fs::path relative = fs::path(name).lexically_normal();
  if (name.empty() || relative.is_absolute() || relative.empty() ||
      *relative.begin() == fs::path(".."))
    return Err(doc.ErrorAt(
        node, key, "expected a path relative to the template's folder, got '" + name + "'"));
  Asset asset;
  asset.path = base_dir / relative;
  std::error_code ec;
  if (!fs::is_regular_file(asset.path, ec))
    return Err(doc.ErrorAt(node, key, "file not found: " + asset.path.string()));
  const auto size = fs::file_size(asset.path, ec);
  if (ec || size > kMaxAssetBytes)
    return Err(doc.ErrorAt(node, key, "the file is larger than 32 MB: " + asset.path.string()));
  auto bytes = ReadFile(asset.path);
  if (!bytes) return Err(doc.ErrorAt(node, key, bytes.error().message()));
  asset.bytes = std::move(*bytes);
  return asset;
}

struct ImageAsset {
  EncodedImage file;
  std::shared_ptr<const internal::Raster> raster;
};

Result<ImageAsset> ReadImageAsset(const YamlDoc& doc, const YAML::Node& map, const char* key,
                                  const fs::path& base_dir) {
  const YAML::Node node = map[key];
  if (!node.IsScalar()) return Err(doc.ErrorAt(node, key, "expected a file name"));
  NUDGE_ASSIGN_OR_RETURN(Asset asset, ReadAsset(doc, node, key, base_dir));
  auto raster = internal::DecodeImage(asset.bytes);
  if (!raster)
    return Err(doc.ErrorAt(node, key, asset.path.string() + ": " + raster.error().message()));
  ImageAsset out;
  out.file.format = *internal::SniffImageFormat(asset.bytes);
  out.file.bytes = std::move(asset.bytes);
  out.raster = std::move(*raster);
  return out;
}

Result<Box> ParseBox(const YamlDoc& doc, const YAML::Node& layer, int canvas_w, int canvas_h) {
  const YAML::Node node = layer["box"];
  if (!node.IsDefined() || node.IsNull())
    return Err(doc.ErrorAt(layer, "box", "missing: { x, y, width, height } in pixels"));
  if (!node.IsMap()) return Err(doc.ErrorAt(node, "box", "expected { x, y, width, height }"));
  NUDGE_TRY(core::YamlNamed(core::YamlKnownKeys(doc, node, {"x", "y", "width", "height"}), "box"));
  Box box;
  NUDGE_ASSIGN_OR_RETURN(
      box.x, core::YamlPrefixed(RequiredInt(doc, node, "x", 0, internal::kMaxSide), "box"));
  NUDGE_ASSIGN_OR_RETURN(
      box.y, core::YamlPrefixed(RequiredInt(doc, node, "y", 0, internal::kMaxSide), "box"));
  NUDGE_ASSIGN_OR_RETURN(
      box.width, core::YamlPrefixed(RequiredInt(doc, node, "width", 1, internal::kMaxSide), "box"));
  NUDGE_ASSIGN_OR_RETURN(
      box.height,
      core::YamlPrefixed(RequiredInt(doc, node, "height", 1, internal::kMaxSide), "box"));
  if (box.x + box.width > canvas_w || box.y + box.height > canvas_h)
    return Err(doc.ErrorAt(node, "box",
                           "x " + std::to_string(box.x) + " + width " + std::to_string(box.width) +
                               ", y " + std::to_string(box.y) + " + height " +
                               std::to_string(box.height) + " reaches outside the " +
                               std::to_string(canvas_w) + "x" + std::to_string(canvas_h) +
                               " image"));
  return box;
}

struct LayerExtras {
  std::string font_bytes;  // a font file's bytes, for the version
};

Result<ImageLayer> ParseLayer(const YamlDoc& doc, const YAML::Node& node, int canvas_w,
                              int canvas_h, const fs::path& base_dir, LayerExtras& extras) {
  if (!node.IsMap())
    return Err(doc.ErrorAt(node, "", "expected a layer (a mapping with text or qr)"));
  const bool is_text = node["text"].IsDefined(), is_qr = node["qr"].IsDefined();
  if (is_text == is_qr)
    return Err(doc.ErrorAt(node, "", "a layer has either text or qr (exactly one of them)"));
  ImageLayer layer;
  if (is_text) {
    NUDGE_TRY(
        core::YamlKnownKeys(doc, node,
                            {"text", "font", "font_file", "size", "min_size", "color", "box",
                             "align", "valign", "wrap", "max_lines", "shrink_to_fit", "fallback"}));
  } else {
    layer.kind = ImageLayer::Kind::kQr;
    NUDGE_TRY(
        core::YamlKnownKeys(doc, node, {"qr", "box", "color", "background", "ec", "fallback"}));
  }
  const char* source_key = is_text ? "text" : "qr";
  NUDGE_ASSIGN_OR_RETURN(auto source, core::YamlString(doc, node, source_key));
  layer.source = source.value_or("");
  layer.source_where = doc.Where(node[source_key]);
  NUDGE_ASSIGN_OR_RETURN(auto fallback, core::YamlString(doc, node, "fallback"));
  layer.fallback = fallback.value_or("");
  // Text that is too long whatever the contact (no Liquid in it, or the fallback) would make
  // every render fail and serve the template's fallback image: refused when saved.
  auto too_long = [&](const char* key, const std::string& text) -> Status {
    if (text.size() <= kMaxLayerTextBytes) return Status::Ok();
    return doc.ErrorAt(node[key], key,
                       "the text has " + std::to_string(text.size()) + " bytes (at most " +
                           std::to_string(kMaxLayerTextBytes) + ")");
  };
  if (layer.source.find("{{") == std::string::npos && layer.source.find("{%") == std::string::npos)
    NUDGE_TRY(too_long(source_key, layer.source));
  NUDGE_TRY(too_long("fallback", layer.fallback));
  NUDGE_ASSIGN_OR_RETURN(layer.box, ParseBox(doc, node, canvas_w, canvas_h));
  NUDGE_ASSIGN_OR_RETURN(layer.color, ColorField(doc, node, "color", Rgba{0, 0, 0, 255}));

  if (!is_text) {
    NUDGE_ASSIGN_OR_RETURN(layer.background,
                           ColorField(doc, node, "background", Rgba{255, 255, 255, 255}));
    NUDGE_ASSIGN_OR_RETURN(auto ec, EnumField(doc, node, "ec", {"l", "m", "q", "h"}));
    if (ec) layer.error_correction = static_cast<QrErrorCorrection>(*ec);
    return layer;
  }

  NUDGE_ASSIGN_OR_RETURN(auto font, core::YamlString(doc, node, "font"));
  if (node["font_file"].IsDefined()) {
    if (font) return Err(doc.ErrorAt(node["font"], "font", "give font or font_file, not both"));
    const YAML::Node file = node["font_file"];
    if (!file.IsScalar()) return Err(doc.ErrorAt(file, "font_file", "expected a file name"));
    NUDGE_ASSIGN_OR_RETURN(Asset asset, ReadAsset(doc, file, "font_file", base_dir));
    const fs::path absolute = fs::absolute(asset.path).lexically_normal();
    auto description = internal::RegisterFontFile(absolute, asset.bytes);
    if (!description)
      return Err(doc.ErrorAt(file, "font_file",
                             asset.path.string() + ": " + description.error().message()));
    layer.font = *description;
    layer.font_file = absolute.string();
    extras.font_bytes = std::move(asset.bytes);
  } else {
    layer.font = font.value_or("DejaVu Sans");
    Status installed = internal::CheckFontInstalled(layer.font);
    if (!installed.ok()) return Err(doc.ErrorAt(node["font"], "font", installed.message()));
  }
  NUDGE_ASSIGN_OR_RETURN(auto size, SizeField(doc, node, "size"));
  layer.size = size.value_or(32);
  NUDGE_ASSIGN_OR_RETURN(auto min_size, SizeField(doc, node, "min_size"));
  if (min_size && *min_size > layer.size)
    return Err(doc.ErrorAt(node["min_size"], "min_size", "is larger than size"));
  layer.min_size =
      min_size.value_or(std::min(layer.size, std::max(8.0, std::floor(layer.size / 2))));
  NUDGE_ASSIGN_OR_RETURN(auto align, EnumField(doc, node, "align", {"left", "center", "right"}));
  if (align) layer.align = static_cast<HAlign>(*align);
  NUDGE_ASSIGN_OR_RETURN(auto valign, EnumField(doc, node, "valign", {"top", "middle", "bottom"}));
  if (valign) layer.valign = static_cast<VAlign>(*valign);
  NUDGE_ASSIGN_OR_RETURN(auto wrap, core::YamlBool(doc, node, "wrap"));
  layer.wrap = wrap.value_or(true);
  NUDGE_ASSIGN_OR_RETURN(auto max_lines, IntField(doc, node, "max_lines", 0, 1000));
  layer.max_lines = max_lines.value_or(0);
  NUDGE_ASSIGN_OR_RETURN(auto shrink, core::YamlBool(doc, node, "shrink_to_fit"));
  layer.shrink_to_fit = shrink.value_or(false);
  return layer;
}

std::string HashPart(std::string_view bytes) { return core::Sha256Hex(bytes); }

}  // namespace

bool IsImageTemplateId(std::string_view id) {
  if (id.empty() || id.size() > 100) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

Result<ImageFormat> ParseImageFormat(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "png") return ImageFormat::kPng;
  if (lower == "jpg" || lower == "jpeg") return ImageFormat::kJpeg;
  if (lower == "webp") return ImageFormat::kWebp;
  return Err(Status::Invalid("unknown image format '" + std::string(name) +
                             "' (expected png, jpg or webp)"));
}

std::string_view ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "png";
    case ImageFormat::kJpeg:
      return "jpg";
    case ImageFormat::kWebp:
      return "webp";
  }
  return "png";
}

std::string_view ContentType(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "image/png";
    case ImageFormat::kJpeg:
      return "image/jpeg";
    case ImageFormat::kWebp:
      return "image/webp";
  }
  return "application/octet-stream";
}

const std::string& ImageTemplate::id() const { return data_->id; }
const std::string& ImageTemplate::version() const { return data_->version; }
ImageFormat ImageTemplate::default_format() const { return data_->format; }
int ImageTemplate::quality() const { return data_->quality; }
int ImageTemplate::width() const { return data_->base->width(); }
int ImageTemplate::height() const { return data_->base->height(); }
const std::vector<ImageLayer>& ImageTemplate::layers() const { return data_->layers; }
const std::string& ImageTemplate::base_bytes() const { return data_->base_bytes; }

const EncodedImage& ImageTemplate::FallbackBytes(ImageFormat format) const {
  const internal::ImageTemplateData& d = *data_;
  if (d.fallback_file.format == format) return d.fallback_file;
  const size_t i = static_cast<size_t>(format);
  std::call_once(d.fallback_once[i], [&] {
    auto converted = internal::EncodeRaster(*d.fallback, format, d.quality);
    d.fallback_converted[i] = converted ? std::move(*converted) : d.fallback_file;
  });
  return d.fallback_converted[i];
}

Result<ImageTemplate> ParseImageTemplate(std::string_view text, std::string_view source_name,
                                         const std::filesystem::path& base_dir,
                                         const LayerSourceCheck& check) {
  NUDGE_TRY(internal::InitImaging());
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source_name));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(core::YamlKnownKeys(
      doc, root,
      {"id", "description", "base", "canvas", "format", "quality", "fallback", "layers"}));
  auto data = std::make_shared<internal::ImageTemplateData>();

  NUDGE_ASSIGN_OR_RETURN(auto id, core::YamlString(doc, root, "id"));
  if (!id) return Err(doc.ErrorAt(root, "id", "missing"));
  if (!IsImageTemplateId(*id))
    return Err(
        doc.ErrorAt(root["id"], "id",
                    "expected letters, digits, '-' and '_' (at most 100), got '" + *id + "'"));
  const fs::path source_path(source_name);
  if ((source_path.extension() == ".yaml" || source_path.extension() == ".yml") &&
      source_path.stem().string() != *id)
    return Err(doc.ErrorAt(
        root["id"], "id",
        "'" + *id + "' does not match the file name '" + source_path.filename().string() + "'"));
  data->id = *id;
  NUDGE_ASSIGN_OR_RETURN(auto description, core::YamlString(doc, root, "description"));
  (void)description;

  NUDGE_ASSIGN_OR_RETURN(auto format,
                         EnumField(doc, root, "format", {"png", "jpg", "jpeg", "webp"}));
  if (format)
    data->format = *format == 0   ? ImageFormat::kPng
                   : *format <= 2 ? ImageFormat::kJpeg
                                  : ImageFormat::kWebp;
  NUDGE_ASSIGN_OR_RETURN(auto quality, IntField(doc, root, "quality", 1, 100));
  data->quality = quality.value_or(85);

  std::string version_parts(kRendererVersion);
  version_parts += HashPart(text);
  const bool has_base = root["base"].IsDefined(), has_canvas = root["canvas"].IsDefined();
  if (has_base == has_canvas)
    return Err(doc.ErrorAt(root, "base", "give either base (an image file) or canvas, not both"));
  if (has_base) {
    NUDGE_ASSIGN_OR_RETURN(ImageAsset base, ReadImageAsset(doc, root, "base", base_dir));
    data->base_bytes = base.file.bytes;
    data->base = base.raster;
    data->fallback_file = std::move(base.file);
    data->fallback = std::move(base.raster);
    version_parts += HashPart(data->base_bytes);
  } else {
    const YAML::Node canvas = root["canvas"];
    if (!canvas.IsMap())
      return Err(doc.ErrorAt(canvas, "canvas", "expected { width, height, background }"));
    NUDGE_TRY(core::YamlNamed(core::YamlKnownKeys(doc, canvas, {"width", "height", "background"}),
                              "canvas"));
    NUDGE_ASSIGN_OR_RETURN(
        const int w,
        core::YamlPrefixed(RequiredInt(doc, canvas, "width", 1, internal::kMaxSide), "canvas"));
    NUDGE_ASSIGN_OR_RETURN(
        const int h,
        core::YamlPrefixed(RequiredInt(doc, canvas, "height", 1, internal::kMaxSide), "canvas"));
    if (int64_t{w} * h > internal::kMaxPixels)
      return Err(doc.ErrorAt(canvas, "canvas", "larger than 16 megapixels"));
    NUDGE_ASSIGN_OR_RETURN(const Rgba bg, core::YamlPrefixed(ColorField(doc, canvas, "background",
                                                                        Rgba{255, 255, 255, 255}),
                                                             "canvas"));
    auto raster = internal::MakeCanvas(w, h, bg);
    if (!raster) return Err(doc.ErrorAt(canvas, "canvas", raster.error().message()));
    data->base = *raster;
    data->fallback = *raster;
    auto png = internal::EncodeRaster(**raster, ImageFormat::kPng, data->quality);
    if (!png) return Err(doc.ErrorAt(canvas, "canvas", png.error().message()));
    data->fallback_file = std::move(*png);
  }
  if (root["fallback"].IsDefined()) {
    NUDGE_ASSIGN_OR_RETURN(ImageAsset fallback, ReadImageAsset(doc, root, "fallback", base_dir));
    version_parts += HashPart(fallback.file.bytes);
    data->fallback_file = std::move(fallback.file);
    data->fallback = std::move(fallback.raster);
  }

  const YAML::Node layers = root["layers"];
  if (layers.IsDefined() && !layers.IsNull()) {
    if (!layers.IsSequence())
      return Err(
          doc.ErrorAt(layers, "layers", "expected a list of layers (- text: ... / - qr: ...)"));
    for (size_t i = 0; i < layers.size(); ++i) {
      LayerExtras extras;
      auto layer =
          ParseLayer(doc, layers[i], data->base->width(), data->base->height(), base_dir, extras);
      if (!layer) {
        // "box.x: ..." becomes "layers[0].box.x: ..."; a message naming no field gets
        // "layers[0]: ...".
        const Status& e = layer.error();
        const std::string& m = e.message();
        const size_t colon = m.find(": ");
        const bool named =
            colon != std::string::npos && m.substr(0, colon).find(' ') == std::string::npos;
        return Err(Status(e.code(), "layers[" + std::to_string(i) + "]" + (named ? "." : ": ") + m,
                          e.where()));
      }
      if (check) {
        Status checked = check(i, layer->source);
        if (!checked.ok()) {
          const YAML::Node source =
              layers[i][layer->kind == ImageLayer::Kind::kText ? "text" : "qr"];
          const std::string where = checked.where().empty()
                                        ? doc.Where(source)
                                        : doc.WhereInside(source, checked.where());
          return Err(Status(checked.code(),
                            "layers[" + std::to_string(i) + "]." +
                                (layer->kind == ImageLayer::Kind::kText ? "text" : "qr") + ": " +
                                checked.message(),
                            where));
        }
      }
      if (!extras.font_bytes.empty()) version_parts += HashPart(extras.font_bytes);
      data->layers.push_back(std::move(*layer));
    }
  }
  data->version = core::Sha256Hex(version_parts);
  return ImageTemplate(std::move(data));
}

Result<ImageTemplate> LoadImageTemplateFile(const std::filesystem::path& yaml_path,
                                            const LayerSourceCheck& check) {
  auto text = ReadFile(yaml_path);
  if (!text) return Err(text.error());
  return ParseImageTemplate(*text, yaml_path.string(), yaml_path.parent_path(), check);
}

Result<std::vector<std::string>> RenderLayerTexts(const ImageTemplate& tmpl,
                                                  const LayerTextFn& texts) {
  std::vector<std::string> out;
  const auto& layers = tmpl.layers();
  out.reserve(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    auto text = texts(i, layers[i].source);
    const std::string where = "layers[" + std::to_string(i) + "]";
    if (!text) return Err(text.error().WithPrefix(where));
    if (text->find_first_not_of(" \t\r\n") == std::string::npos) *text = layers[i].fallback;
    if (text->size() > kMaxLayerTextBytes)
      return Err(Status(Code::kTooLarge,
                        "the text has " + std::to_string(text->size()) + " bytes (at most " +
                            std::to_string(kMaxLayerTextBytes) + ")",
                        where));
    out.push_back(internal::ValidUtf8(std::move(*text)));
  }
  return out;
}

Result<EncodedImage> RenderImage(const ImageTemplate& tmpl, const std::vector<std::string>& texts,
                                 ImageFormat format) {
  if (texts.size() != tmpl.layers().size())
    return Err(Status::Invalid("expected " + std::to_string(tmpl.layers().size()) +
                               " layer texts, got " + std::to_string(texts.size())));
  return internal::Compose(*tmpl.data().base, tmpl.layers(), texts, format, tmpl.quality());
}

Result<EncodedImage> Render(const ImageTemplate& tmpl, const LayerTextFn& texts,
                            std::optional<ImageFormat> format) {
  NUDGE_ASSIGN_OR_RETURN(std::vector<std::string> rendered, RenderLayerTexts(tmpl, texts));
  return RenderImage(tmpl, rendered, format.value_or(tmpl.default_format()));
}

}  // namespace nudge::content
