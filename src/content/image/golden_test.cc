// Golden images: fixture templates rendered and compared pixel by pixel with the PNGs in
// tests/images/golden/ (JPEG and WebP output is compared decoded). A pixel differs when one of
// its channels is off by more than kChannelTolerance; a test fails when more than
// kMaxDifferingFraction of the pixels differ. The actual image and a difference map are then
// written to $TMPDIR/nudge-golden/ for a look.
//
// NUDGE_UPDATE_GOLDEN=1 rewrites the goldens from the current output (review them before
// committing). The QR codes are also read back with zbarimg (Debian zbar-tools).
#include <gtest/gtest.h>
#include <unistd.h>
#include <vips/vips.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "content/image/image.h"
#include "content/image/image_test_util.h"
#include "content/image/internal/raster.h"

namespace nudge::content {
namespace {

namespace fs = std::filesystem;
using testing::Vars;

constexpr int kChannelTolerance = 24;
constexpr double kMaxDifferingFraction = 0.002;

struct Pixels {
  int width = 0, height = 0;
  std::string rgba;  // 4 bytes a pixel
};

// Decodes any PNG/JPEG/WebP to 8-bit RGBA (opaque images get alpha 255).
Pixels Decode(const std::string& bytes) {
  Pixels p;
  if (!internal::InitImaging().ok()) return p;
  VipsImage* img = vips_image_new_from_buffer(bytes.data(), bytes.size(), "", nullptr);
  if (img == nullptr) {
    vips_error_clear();
    return p;
  }
  VipsImage* rgba = nullptr;
  if (vips_image_get_bands(img) == 3) {
    vips_addalpha(img, &rgba, nullptr);
  } else {
    rgba = img;
    g_object_ref(rgba);
  }
  size_t size = 0;
  void* mem = vips_image_write_to_memory(rgba, &size);
  p.width = vips_image_get_width(rgba);
  p.height = vips_image_get_height(rgba);
  p.rgba.assign(static_cast<const char*>(mem), size);
  g_free(mem);
  g_object_unref(rgba);
  g_object_unref(img);
  return p;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string EncodePng(const Pixels& p) {
  VipsImage* img = vips_image_new_from_memory_copy(p.rgba.data(), p.rgba.size(), p.width, p.height,
                                                   4, VIPS_FORMAT_UCHAR);
  VipsImage* srgb = nullptr;
  vips_copy(img, &srgb, "interpretation", VIPS_INTERPRETATION_sRGB, nullptr);
  void* buf = nullptr;
  size_t len = 0;
  vips_pngsave_buffer(srgb, &buf, &len, "strip", TRUE, nullptr);
  std::string out(static_cast<const char*>(buf), len);
  g_free(buf);
  g_object_unref(srgb);
  g_object_unref(img);
  return out;
}

bool Updating() {
  const char* v = std::getenv("NUDGE_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

// Compares the image with golden/<name>.png (or rewrites it when updating).
void ExpectMatchesGolden(const std::string& name, const EncodedImage& image) {
  const fs::path golden = fs::path(testing::GoldenDir()) / (name + ".png");
  const Pixels actual = Decode(image.bytes);
  ASSERT_GT(actual.width, 0) << name << ": the output does not decode";
  if (Updating()) {
    WriteFile(golden, image.format == ImageFormat::kPng ? image.bytes : EncodePng(actual));
    std::printf("golden image written: %s\n", golden.c_str());
    return;
  }
  ASSERT_TRUE(fs::exists(golden)) << golden << " is missing: run with NUDGE_UPDATE_GOLDEN=1";
  const Pixels expected = Decode(ReadFile(golden));
  ASSERT_EQ(actual.width, expected.width) << name;
  ASSERT_EQ(actual.height, expected.height) << name;
  Pixels diff = actual;
  size_t differing = 0;
  int worst = 0;
  for (size_t i = 0; i < actual.rgba.size(); i += 4) {
    int d = 0;
    for (size_t c = 0; c < 4; ++c)
      d = std::max(d, std::abs(static_cast<uint8_t>(actual.rgba[i + c]) -
                               static_cast<uint8_t>(expected.rgba[i + c])));
    worst = std::max(worst, d);
    const bool off = d > kChannelTolerance;
    differing += off ? 1 : 0;
    diff.rgba[i] = diff.rgba[i + 1] = diff.rgba[i + 2] = static_cast<char>(off ? 255 : d * 4);
    diff.rgba[i + 3] = static_cast<char>(255);
  }
  const size_t pixels = actual.rgba.size() / 4;
  const double fraction = static_cast<double>(differing) / static_cast<double>(pixels);
  if (fraction > kMaxDifferingFraction) {
    const fs::path out = fs::temp_directory_path() / "nudge-golden";
    WriteFile(out / (name + ".actual.png"), EncodePng(actual));
    WriteFile(out / (name + ".diff.png"), EncodePng(diff));
    ADD_FAILURE() << name << ": " << differing << " of " << pixels
                  << " pixels differ from the golden image (worst channel difference " << worst
                  << "); see " << out.string() << "/" << name << ".{actual,diff}.png";
  }
}

ImageTemplate Fixture(const std::string& name) {
  auto tmpl = LoadImageTemplateFile(fs::path(testing::FixturesDir()) / (name + ".yaml"));
  EXPECT_TRUE(tmpl) << tmpl.error().ToString();
  return *tmpl;
}

EncodedImage RenderOk(const ImageTemplate& tmpl, const LayerTextFn& texts, ImageFormat format) {
  auto image = Render(tmpl, texts, format);
  EXPECT_TRUE(image) << image.error().ToString();
  EXPECT_EQ(image->format, format);
  return image ? *image : EncodedImage{};
}

const std::string kTicketUrl = "https://events.acme.test/checkin?t=Zx81-ada&seat=14F";

TEST(GoldenImages, WrapEllipsisOneLineAndShrinkToFit) {
  ExpectMatchesGolden(
      "wrap", RenderOk(Fixture("wrap"), Vars({{"name", "Ada Lovelace"}}), ImageFormat::kPng));
}

TEST(GoldenImages, AccentsGreekCyrillicAndLiteralMarkup) {
  ExpectMatchesGolden("unicode",
                      RenderOk(Fixture("unicode"), Vars({{"name", "Zoë"}}), ImageFormat::kPng));
}

// Needs a CJK font: Debian's fonts-wqy-microhei. Without it the text would be drawn as boxes.
TEST(GoldenImages, ChineseJapaneseKorean) {
  if (!internal::CheckFontInstalled("WenQuanYi Micro Hei").ok())
    GTEST_SKIP() << "no CJK font: install fonts-wqy-microhei to run this test";
  ExpectMatchesGolden("cjk", RenderOk(Fixture("cjk"), Vars({{"name", "李雷"}}), ImageFormat::kPng));
}

TEST(GoldenImages, NineAlignments) {
  ExpectMatchesGolden("align", RenderOk(Fixture("align"), Vars({}), ImageFormat::kPng));
}

TEST(GoldenImages, TicketWithQrCodeInPngJpegAndWebp) {
  const ImageTemplate ticket = Fixture("ticket");
  const auto vars = Vars({{"name", "Ada Lovelace"}, {"url", kTicketUrl}});
  ExpectMatchesGolden("ticket", RenderOk(ticket, vars, ImageFormat::kPng));
  ExpectMatchesGolden("ticket.jpg", RenderOk(ticket, vars, ImageFormat::kJpeg));
  ExpectMatchesGolden("ticket.webp", RenderOk(ticket, vars, ImageFormat::kWebp));
}

TEST(GoldenImages, TransparentBaseKeptInPngFlattenedInJpeg) {
  const ImageTemplate badge = Fixture("badge");
  const auto vars = Vars({{"name", "Grace"}});
  const EncodedImage png = RenderOk(badge, vars, ImageFormat::kPng);
  ExpectMatchesGolden("badge", png);
  ExpectMatchesGolden("badge.jpg", RenderOk(badge, vars, ImageFormat::kJpeg));
  // The corners stay transparent in PNG.
  const Pixels p = Decode(png.bytes);
  ASSERT_EQ(p.width, 240);
  EXPECT_EQ(static_cast<uint8_t>(p.rgba[3]), 0);
}

TEST(GoldenImages, DemoWelcomeHero) {
  auto tmpl = LoadImageTemplateFile(fs::path(testing::DemoImagesDir()) / "welcome-hero.yaml");
  ASSERT_TRUE(tmpl) << tmpl.error().ToString();
  const auto vars = Vars({{"contact.traits.first_name", "Ada"},
                          {"contact.traits.neighbourhood", "Kreuzberg"},
                          {"message.view_in_browser_url", "https://acme.test/m/8f2c1e"}});
  ExpectMatchesGolden("welcome-hero", RenderOk(*tmpl, vars, ImageFormat::kPng));
}

// --- QR codes read back by a real decoder ------------------------------------------------------

std::string FindZbarimg() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = dirs.find(':', start);
    const fs::path candidate =
        fs::path(dirs.substr(start, end == std::string::npos ? std::string::npos : end - start)) /
        "zbarimg";
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

// What zbarimg reads from the image (its --raw output, one line per code).
std::string Zbar(const std::string& zbarimg, const EncodedImage& image, const std::string& name) {
  const fs::path file =
      fs::temp_directory_path() / ("nudge-qr-" + std::to_string(::getpid()) + "-" + name + "." +
                                   std::string(ImageFormatName(image.format)));
  WriteFile(file, image.bytes);
  std::string out;
  const std::string cmd = zbarimg + " --raw -q '" + file.string() + "' 2>/dev/null";
  if (FILE* pipe = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    ::pclose(pipe);
  }
  fs::remove(file);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(QrCodes, ZbarimgReadsTheCheckInUrlInEveryFormat) {
  const std::string zbarimg = FindZbarimg();
  if (zbarimg.empty()) GTEST_SKIP() << "zbarimg not found: install zbar-tools to run this test";
  const ImageTemplate ticket = Fixture("ticket");
  for (ImageFormat format : {ImageFormat::kPng, ImageFormat::kJpeg, ImageFormat::kWebp}) {
    const auto image = RenderOk(ticket, Vars({{"name", "Ada"}, {"url", kTicketUrl}}), format);
    EXPECT_EQ(Zbar(zbarimg, image, "ticket"), kTicketUrl) << ImageFormatName(format);
  }
}

TEST(QrCodes, ZbarimgReadsLongAndNonAsciiTextAtEveryErrorCorrectionLevel) {
  const std::string zbarimg = FindZbarimg();
  if (zbarimg.empty()) GTEST_SKIP() << "zbarimg not found: install zbar-tools to run this test";
  const std::string long_url =
      "https://acme.test/m/view?contact=4f1c2d9e-77aa-4b0e-9d1e-3b6c5a8f0e21&message=welcome-1"
      "&utm_source=nudge&utm_medium=email&utm_campaign=spring-open-house&sig=Zx81aQ0-_b";
  for (const char* ec : {"L", "M", "Q", "H"}) {
    const std::string yaml = std::string("id: qr\ncanvas: { width: 400, height: 400 }\n") +
                             "layers:\n  - qr: \"{{ data }}\"\n    ec: " + ec +
                             "\n    box: { x: 20, y: 20, width: 360, height: 360 }\n";
    auto tmpl = ParseImageTemplate(yaml, "qr.yaml", testing::FixturesDir());
    ASSERT_TRUE(tmpl) << tmpl.error().ToString();
    for (const std::string& data : {long_url, std::string("Grüße aus Zürich, 東京")}) {
      auto image = Render(*tmpl, Vars({{"data", data}}), ImageFormat::kPng);
      ASSERT_TRUE(image) << image.error().ToString();
      EXPECT_EQ(Zbar(zbarimg, *image, std::string("ec") + ec), data) << "ec " << ec;
    }
  }
}

}  // namespace
}  // namespace nudge::content
