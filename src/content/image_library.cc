#include "content/image_library.h"

#include <spdlog/spdlog.h>

#include <fstream>

#include "content/template.h"
#include "core/crypto.h"
#include "core/time.h"

namespace nudge::content {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool PlainFileName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::shared_ptr<const Template>> CompileLayer(std::string_view source) {
  CompileOptions co;
  co.filters = NudgeFilters();
  return Template::Compile(source, co);
}

}  // namespace

json ImageInfo::ToJson() const {
  return json{{"id", id},
              {"version", version},
              {"updated_at", core::FormatIso8601(updated_at)},
              {"width", tmpl->width()},
              {"height", tmpl->height()},
              {"format", std::string(ImageFormatName(tmpl->default_format()))},
              {"layers", tmpl->layers().size()},
              {"assets", assets},
              {"yaml", yaml}};
}

ImageLibrary::ImageLibrary(store::Store& store, fs::path asset_root, const core::Clock& clock,
                           size_t cache_bytes)
    : store_(store), root_(std::move(asset_root)), clock_(clock), cache_(cache_bytes) {}
ImageLibrary::~ImageLibrary() = default;

fs::path ImageLibrary::AssetDir(store::WorkspaceId ws, const std::string& id,
                                std::string_view stored) const {
  return root_ / std::to_string(ws) / id / core::Sha256Hex(stored).substr(0, 16);
}

Result<ImageInfo> ImageLibrary::Parse(store::WorkspaceId ws, const std::string& id,
                                      const json& body, std::string_view text,
                                      int64_t version) const {
  // The id names a directory under DATA/images/<workspace>/: nothing else may pass ("..").
  if (!IsImageTemplateId(id))
    return Err(Status::Invalid(
        "an image template's id has 1 to 100 letters, digits, '-' or '_', not '" + id + "'", "id"));
  if (!body.is_object()) return Err(Status::Invalid("expected a JSON object", "body"));
  for (const auto& [key, value] : body.items()) {
    if (key != "yaml" && key != "assets")
      return Err(Status::Invalid("unknown key '" + key + "' (expected yaml, assets)", key));
  }
  if (!body.contains("yaml") || !body["yaml"].is_string())
    return Err(Status::Invalid("expected the image template's YAML as a string", "yaml"));
  ImageInfo info;
  info.id = id;
  info.version = version;
  info.yaml = body["yaml"].get<std::string>();
  std::map<std::string, std::string> assets;
  if (body.contains("assets")) {
    const json& a = body["assets"];
    if (!a.is_object())
      return Err(Status::Invalid("expected an object of file name → base64", "assets"));
    for (const auto& [name, value] : a.items()) {
      const std::string field = "assets." + name;
      if (!PlainFileName(name))
        return Err(Status::Invalid(
            "an asset is named by a plain file name (letters, digits, '.', '_', '-')", field));
      if (!value.is_string()) return Err(Status::Invalid("expected base64 text", field));
      auto bytes = core::Base64Decode(value.get<std::string>());
      if (!bytes) return Err(Status::Invalid("not valid base64", field));
      assets[name] = std::move(*bytes);
      info.assets.push_back(name);
    }
  }
  // The assets go where the template reads them from: a directory per content, so that a
  // template is parsed once, before it is stored, where it stays.
  const fs::path dir = AssetDir(ws, id, text);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Err(Status::Internal("cannot create " + dir.string() + ": " + ec.message()));
  for (const auto& [name, bytes] : assets) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return Err(Status::Internal("cannot write " + (dir / name).string()));
  }
  std::vector<std::shared_ptr<const Template>> layers;
  auto check = [&](size_t layer, std::string_view source) -> Status {
    auto t = CompileLayer(source);
    if (!t) return t.error();
    if (layers.size() <= layer) layers.resize(layer + 1);
    layers[layer] = *t;
    return Status::Ok();
  };
  auto parsed = ParseImageTemplate(info.yaml, "images/" + id + ".yaml", dir, check);
  if (!parsed) {
    fs::remove_all(dir, ec);            // nothing stored uses it ...
    fs::remove(dir.parent_path(), ec);  // ... nor the template's directory, when it was new
    // Name the asset as the template does, not by where the server keeps it.
    std::string message = parsed.error().message();
    const std::string prefix = dir.string() + "/";
    for (size_t at = message.find(prefix); at != std::string::npos; at = message.find(prefix))
      message.erase(at, prefix.size());
    return Err(Status(parsed.error().code(), message, parsed.error().where()));
  }
  if (parsed->id() != id)
    return Err(Status::Invalid(
        "the document's id '" + parsed->id() + "' is not the URL's '" + id + "'", "id"));
  layers.resize(parsed->layers().size());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!layers[i]) {
      NUDGE_ASSIGN_OR_RETURN(layers[i], CompileLayer(parsed->layers()[i].source));
    }
  }
  info.tmpl = std::make_shared<const ImageTemplate>(std::move(*parsed));
  info.layers = std::move(layers);
  return info;
}

Status ImageLibrary::Load() {
  std::vector<store::Definition> defs;
  NUDGE_TRY(store_.Read([&](store::ReadTxn& r) -> Status {
    NUDGE_ASSIGN_OR_RETURN(defs, r.AllDefinitions("image"));
    return Status::Ok();
  }));
  for (const auto& d : defs) {
    const json body = json::parse(d.body, nullptr, false);
    auto info = Parse(d.workspace, d.id, body, d.body, d.version);
    if (!info) {
      spdlog::warn("image template '{}' (workspace {}) no longer loads: {}", d.id, d.workspace,
                   info.error().ToString());
      continue;
    }
    info->updated_at = d.updated_at;
    RemoveOtherVersions(AssetDir(d.workspace, d.id, d.body));
    std::lock_guard lock(mutex_);
    images_[d.workspace][d.id] = std::move(*info);
  }
  return Status::Ok();
}

Result<ImageInfo> ImageLibrary::Put(store::WorkspaceId ws, const json& body,
                                    const std::string& id) {
  std::lock_guard writes(writes_mutex_);
  const std::string text = body.dump();
  NUDGE_ASSIGN_OR_RETURN(ImageInfo info, Parse(ws, id, body, text, 0));
  const core::Millis now = clock_.NowMillis();
  NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(info.version, txn.PutDefinition(ws, "image", id, text, now));
    return Status::Ok();
  }));
  info.updated_at = now;
  {
    std::lock_guard lock(mutex_);
    images_[ws][id] = info;
  }
  RemoveOtherVersions(AssetDir(ws, id, text));
  return info;
}

void ImageLibrary::RemoveOtherVersions(const fs::path& keep) {
  // Directories of earlier versions are no longer read: only the stored one stays.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(keep.parent_path(), ec))
    if (e.path() != keep) fs::remove_all(e.path(), ec);
}

Result<bool> ImageLibrary::Delete(store::WorkspaceId ws, const std::string& id) {
  if (!IsImageTemplateId(id)) return false;  // no such template, and no directory to remove
  std::lock_guard writes(writes_mutex_);
  bool removed = false;
  NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(removed, txn.DeleteDefinition(ws, "image", id));
    return Status::Ok();
  }));
  {
    std::lock_guard lock(mutex_);
    images_[ws].erase(id);
  }
  if (removed) {
    std::error_code ec;
    fs::remove_all(root_ / std::to_string(ws) / id, ec);
  }
  return removed;
}

std::optional<ImageInfo> ImageLibrary::Get(store::WorkspaceId ws, const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto w = images_.find(ws);
  if (w == images_.end()) return std::nullopt;
  auto it = w->second.find(id);
  if (it == w->second.end()) return std::nullopt;
  return it->second;
}

std::vector<ImageInfo> ImageLibrary::List(store::WorkspaceId ws) const {
  std::vector<ImageInfo> out;
  std::lock_guard lock(mutex_);
  auto w = images_.find(ws);
  if (w == images_.end()) return out;
  for (const auto& [id, info] : w->second) out.push_back(info);
  return out;
}

Result<ImageLibrary::Rendered> ImageLibrary::Render(store::WorkspaceId ws, const std::string& id,
                                                    const Context& context,
                                                    std::optional<ImageFormat> format) {
  auto info = Get(ws, id);
  if (!info) return Err(Status::NotFound("no image template '" + id + "'"));
  RenderOptions ro;
  ro.clock = &clock_;
  ro.strict_errors = true;
  ro.max_output_bytes = kMaxLayerTextBytes;
  auto texts = [&](size_t layer, std::string_view) -> Result<std::string> {
    if (layer >= info->layers.size())
      return Err(Status::Internal("image layer " + std::to_string(layer) + " is not compiled"));
    return info->layers[layer]->Render(context, ro);
  };
  Rendered out;
  auto image = cache_.Render(*info->tmpl, texts, format);
  if (image) {
    out.image = *image;
    return out;
  }
  out.fallback = true;
  out.error = image.error().ToString();
  const ImageFormat f = format.value_or(info->tmpl->default_format());
  out.image = std::make_shared<const EncodedImage>(info->tmpl->FallbackBytes(f));
  return out;
}

}  // namespace nudge::content
