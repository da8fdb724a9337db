// image_bench: renders per second of one thread (so, per core) for a 1200x600 image template with
// two text layers and a QR code (examples/demo/images/welcome-hero.yaml), in PNG, JPEG and WebP:
//   cold    every render a new contact name: text layout, QR code, compositing, encoding
//   cached  the same texts again: served by ImageCache
//   references, plain libvips with no drawing at all: decoding the base image file and encoding
//           it again (vips_image_new_from_buffer + save: the floor of any renderer that reads
//           its base per image), and encoding the base kept decoded in memory (as templates
//           keep it: the floor of this renderer)
// Each figure: renders/s by the wall clock on one thread, and per core: by the CPU time the
// process used (libvips may hand work to a helper thread; the machine may be shared).
// Prints one JSON object. Usage: image_bench TEMPLATE.yaml [SECONDS_PER_FIGURE]
#include <time.h>
#include <vips/vips.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "content/image/image.h"
#include "content/image/internal/raster.h"

namespace {

using nudge::Result;
using namespace nudge::content;
using Clock = std::chrono::steady_clock;

LayerTextFn Texts(const std::string& name) {
  return [name](size_t layer, std::string_view) -> Result<std::string> {
    switch (layer) {
      case 0:
        return "Welcome home, " + name + "!";
      case 1:
        return std::string("Your evenings in Kreuzberg start here.");
      default:
        return "https://acme.test/m/" + name;
    }
  };
}

struct Figure {
  double per_second = 0;       // wall clock
  double per_core_second = 0;  // CPU time
  double cpu_ms = 0;
  int count = 0;
  bool ok = true;
};

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Runs `once` until `seconds` have passed (at least 3 times, at most 100000).
template <typename F>
Figure Measure(double seconds, F once) {
  Figure f;
  const double cpu_start = CpuSeconds();
  const auto start = Clock::now();
  double elapsed = 0;
  while (f.count < 100000 && (f.count < 3 || elapsed < seconds)) {
    f.ok = once(f.count) && f.ok;
    ++f.count;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  const double cpu = CpuSeconds() - cpu_start;
  f.per_second = f.count / elapsed;
  f.per_core_second = f.count / cpu;
  f.cpu_ms = 1000 * cpu / f.count;
  return f;
}

bool Save(VipsImage* in, ImageFormat format) {
  void* buf = nullptr;
  size_t len = 0;
  int rc = -1;
  switch (format) {
    case ImageFormat::kPng:
      rc = vips_pngsave_buffer(in, &buf, &len, "compression", 6, "strip", TRUE, nullptr);
      break;
    case ImageFormat::kJpeg:
      rc = vips_jpegsave_buffer(in, &buf, &len, "Q", 85, "strip", TRUE, nullptr);
      break;
    case ImageFormat::kWebp:
      rc = vips_webpsave_buffer(in, &buf, &len, "Q", 85, "strip", TRUE, nullptr);
      break;
  }
  g_free(buf);
  return rc == 0 && len > 0;
}

// The base image file decoded and encoded again.
bool DecodeEncode(const std::string& bytes, ImageFormat format) {
  VipsImage* in = vips_image_new_from_buffer(bytes.data(), bytes.size(), "", nullptr);
  if (in == nullptr) return false;
  const bool ok = Save(in, format);
  g_object_unref(in);
  return ok;
}

std::string Json(const Figure& f) {
  char buf[200];
  std::snprintf(
      buf, sizeof buf,
      "{\"renders_per_core_s\":%.1f,\"cpu_ms_per_render\":%.3f,\"renders_per_s_wall\":%.1f,"
      "\"n\":%d%s}",
      f.per_core_second, f.cpu_ms, f.per_second, f.count, f.ok ? "" : ",\"errors\":true");
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: image_bench TEMPLATE.yaml [SECONDS_PER_FIGURE]\n");
    return 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  auto tmpl = LoadImageTemplateFile(argv[1]);
  if (!tmpl) {
    std::fprintf(stderr, "image_bench: %s\n", tmpl.error().ToString().c_str());
    return 1;
  }
  bool ok = true;
  std::string json = "{\"template\":\"" + tmpl->id() +
                     "\",\"width\":" + std::to_string(tmpl->width()) +
                     ",\"height\":" + std::to_string(tmpl->height()) +
                     ",\"layers\":" + std::to_string(tmpl->layers().size()) + ",\"threads\":1";
  size_t sizes[3] = {0, 0, 0};
  // The base decoded once into memory, as templates keep it.
  VipsImage* file =
      vips_image_new_from_buffer(tmpl->base_bytes().data(), tmpl->base_bytes().size(), "", nullptr);
  VipsImage* decoded = file != nullptr ? vips_image_copy_memory(file) : nullptr;
  if (decoded == nullptr) {
    std::fprintf(stderr, "image_bench: the base image does not decode\n");
    return 1;
  }
  g_object_unref(file);
  for (ImageFormat format : {ImageFormat::kPng, ImageFormat::kJpeg, ImageFormat::kWebp}) {
    const std::string name(ImageFormatName(format));
    std::fprintf(stderr, "image_bench: %s\n", name.c_str());
    const Figure cold = Measure(seconds, [&](int i) {
      auto image = Render(*tmpl, Texts("Contact" + std::to_string(i)), format);
      if (image) sizes[static_cast<int>(format)] = image->bytes.size();
      return image.has_value();
    });
    ImageCache cache;
    const bool warmed = cache.Render(*tmpl, Texts("Ada"), format).has_value();
    const Figure cached = Measure(
        seconds, [&](int) { return cache.Render(*tmpl, Texts("Ada"), format).has_value(); });
    const Figure floor =
        Measure(seconds, [&](int) { return DecodeEncode(tmpl->base_bytes(), format); });
    const Figure encode_only = Measure(seconds, [&](int) { return Save(decoded, format); });
    ok = ok && cold.ok && cached.ok && floor.ok && encode_only.ok && warmed &&
         cache.stats().hits > 0;
    json +=
        ",\"" + name + "\":{\"cold\":" + Json(cold) + ",\"cached\":" + Json(cached) +
        ",\"reference_vips_decode_encode_base\":" + Json(floor) +
        ",\"reference_vips_encode_decoded_base\":" + Json(encode_only) +
        ",\"bytes\":" + std::to_string(sizes[static_cast<int>(format)]) +
        ",\"cold_vs_reference\":" + std::to_string(cold.per_core_second / floor.per_core_second) +
        "}";
  }
  g_object_unref(decoded);
  json += ",\"ok\":" + std::string(ok ? "true" : "false") + "}";
  std::printf("%s\n", json.c_str());
  return ok ? 0 : 1;
}
