#include "content/image/image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "content/image/image_test_util.h"
#include "content/image/internal/raster.h"

namespace nudge::content {
namespace {

namespace fs = std::filesystem;
using testing::Vars;

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("nudge-image-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path_ / name, std::ios::binary) << bytes;
  }

 private:
  fs::path path_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Result<ImageTemplate> Parse(const std::string& yaml, const std::string& name = "t.yaml") {
  return ParseImageTemplate(yaml, name, testing::FixturesDir());
}

ImageTemplate Fixture(const std::string& name) {
  auto tmpl = LoadImageTemplateFile(fs::path(testing::FixturesDir()) / (name + ".yaml"));
  EXPECT_TRUE(tmpl) << tmpl.error().ToString();
  return *tmpl;
}

// The error's "source:line:column" and message, for the parse-error table below.
struct ParseError {
  const char* what;
  std::string yaml;
  std::string where;
  std::string message_part;
};

TEST(ImageTemplates, BadTemplatesAreRefusedWithLineAndColumn) {
  const std::string canvas = "id: t\ncanvas: { width: 300, height: 200 }\n";
  const std::vector<ParseError> cases = {
      {"unknown top-level key", canvas + "colour: red\n", "t.yaml:3:1", "unknown key"},
      {"unknown layer key",
       canvas +
           "layers:\n  - text: hi\n    colour: red\n    box: {x: 0, y: 0, width: 10, height: 10}\n",
       "t.yaml:5:5", "colour: unknown key"},
      {"text key on a qr layer",
       canvas +
           "layers:\n  - qr: x\n    font: Serif\n    box: {x: 0, y: 0, width: 10, height: 10}\n",
       "t.yaml:5:5", "font: unknown key"},
      {"bad colour",
       canvas + "layers:\n  - text: hi\n    color: '#12345'\n    box: {x: 0, y: 0, width: 10, "
                "height: 10}\n",
       "t.yaml:5:12", "#rgb, #rrggbb or #rrggbbaa"},
      {"bad canvas colour", "id: t\ncanvas: { width: 300, height: 200, background: white }\n",
       "t.yaml:2:48", "canvas.background: expected a colour"},
      {"box outside the canvas",
       canvas + "layers:\n  - text: hi\n    box: { x: 250, y: 0, width: 100, height: 10 }\n",
       "t.yaml:5:10", "outside the 300x200 image"},
      {"box without a size", canvas + "layers:\n  - text: hi\n    box: { x: 0, y: 0, width: 10 }\n",
       "t.yaml:5:10", "layers[0].box.height: missing"},
      {"unknown box key",
       canvas + "layers:\n  - text: hi\n    box: { x: 0, y: 0, w: 10, height: 10 }\n",
       "t.yaml:5:24", "layers[0].box.w: unknown key"},
      {"negative box",
       canvas + "layers:\n  - text: hi\n    box: { x: -1, y: 0, width: 10, height: 10 }\n",
       "t.yaml:5:15", "from 0 to"},
      {"missing box", canvas + "layers:\n  - text: hi\n", "t.yaml:4:5", "box: missing"},
      {"text and qr",
       canvas + "layers:\n  - text: hi\n    qr: x\n    box: {x: 0, y: 0, width: 10, height: 10}\n",
       "t.yaml:4:5", "layers[0]: a layer has either text or qr"},
      {"missing asset", "id: t\nbase: nope.png\n", "t.yaml:2:7", "file not found"},
      {"asset outside the folder", "id: t\nbase: ../fixtures/base.png\n", "t.yaml:2:7",
       "relative to the template's folder"},
      {"absolute asset path", "id: t\nbase: /etc/hostname\n", "t.yaml:2:7",
       "relative to the template's folder"},
      {"not an image", "id: t\nbase: make-assets.sh\n", "t.yaml:2:7", "not a PNG, JPEG or WebP"},
      {"both base and canvas", "id: t\nbase: base.png\ncanvas: { width: 1, height: 1 }\n",
       "t.yaml:1:1", "not both"},
      {"neither base nor canvas", "id: t\n", "t.yaml:1:1", "either base"},
      {"font not installed",
       canvas + "layers:\n  - text: hi\n    font: 'Nonexistent Grotesk Bold'\n    box: {x: 0, y: "
                "0, width: 10, height: 10}\n",
       "t.yaml:5:11", "'Nonexistent Grotesk' is not installed"},
      {"bad align",
       canvas + "layers:\n  - text: hi\n    align: centre\n    box: {x: 0, y: 0, width: 10, "
                "height: 10}\n",
       "t.yaml:5:12", "one of left, center, right"},
      {"bad max_lines",
       canvas + "layers:\n  - text: hi\n    max_lines: 1.5\n    box: {x: 0, y: 0, width: 10, "
                "height: 10}\n",
       "t.yaml:5:16", "whole number"},
      {"bad format", canvas + "format: gif\n", "t.yaml:3:9", "one of png, jpg, jpeg, webp"},
      {"bad error correction",
       canvas + "layers:\n  - qr: x\n    ec: Z\n    box: {x: 0, y: 0, width: 10, height: 10}\n",
       "t.yaml:5:9", "one of l, m, q, h"},
      {"id unlike the file name", "id: other\ncanvas: { width: 1, height: 1 }\n", "t.yaml:1:5",
       "does not match the file name"},
      {"bad id", "id: 'a/b'\ncanvas: { width: 1, height: 1 }\n", "t.yaml:1:5", "letters, digits"},
      {"malformed YAML", "id: t\ncanvas: { width: 1\n", "t.yaml:3:1", ""},
      {"layers not a list", canvas + "layers: { text: hi }\n", "t.yaml:3:9", "a list of layers"},
  };
  for (const ParseError& c : cases) {
    auto tmpl = Parse(c.yaml);
    ASSERT_FALSE(tmpl) << c.what;
    EXPECT_EQ(tmpl.error().code(), Code::kInvalidArgument) << c.what;
    EXPECT_EQ(tmpl.error().where(), c.where) << c.what << ": " << tmpl.error().ToString();
    EXPECT_NE(tmpl.error().message().find(c.message_part), std::string::npos)
        << c.what << ": " << tmpl.error().ToString();
  }
}

TEST(ImageTemplates, LiquidErrorsFromTheCheckPointIntoTheYaml) {
  const std::string yaml =
      "id: t\ncanvas: { width: 300, height: 200 }\nlayers:\n"
      "  - text: \"Hi {{ name | nope }}\"\n    box: { x: 0, y: 0, width: 10, height: 10 }\n"
      "  - qr: |\n      https://a.test/\n      {{ url | nope }}\n"
      "    box: { x: 0, y: 0, width: 100, height: 100 }\n";
  std::vector<size_t> checked;
  auto ok = Parse(yaml, "t.yaml");
  ASSERT_TRUE(ok) << ok.error().ToString();
  // A checker that refuses the filter `nope` at its line:column in the source.
  auto check = [&](size_t layer, std::string_view source) -> Status {
    checked.push_back(layer);
    size_t line = 1, column = 1;
    for (size_t i = 0; i < source.size(); ++i) {
      if (source.substr(i, 4) == "nope")
        return Status::Invalid("unknown filter 'nope'",
                               std::to_string(line) + ":" + std::to_string(column));
      if (source[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return Status::Ok();
  };
  auto first = ParseImageTemplate(yaml, "t.yaml", testing::FixturesDir(), check);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().where(), "t.yaml:4:25");  // the n of nope inside the quotes
  EXPECT_EQ(first.error().message(), "layers[0].text: unknown filter 'nope'");

  std::string second_only = yaml;
  second_only.replace(second_only.find("| nope"), 6, "");
  auto second = ParseImageTemplate(second_only, "t.yaml", testing::FixturesDir(), check);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().where(), "t.yaml:8:16");  // inside the block scalar
  EXPECT_EQ(checked, (std::vector<size_t>{0, 0, 1}));
}

TEST(ImageTemplates, AMissingFileIsNotFound) {
  auto missing = LoadImageTemplateFile(fs::path(testing::FixturesDir()) / "nope.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

TEST(ImageTemplates, DamagedAndHugeImagesAreRefused) {
  TempDir dir;
  const std::string png = ReadFile(fs::path(testing::FixturesDir()) / "base.png");
  dir.Write("cut.png", png.substr(0, png.size() / 2));
  auto cut = ParseImageTemplate("id: t\nbase: cut.png\n", "t.yaml", dir.path());
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().where(), "t.yaml:2:7");
  EXPECT_NE(cut.error().message().find("unreadable image"), std::string::npos)
      << cut.error().ToString();

  auto huge = Parse("id: t\ncanvas: { width: 8192, height: 8192 }\n");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message().find("megapixels"), std::string::npos);
}

TEST(ImageTemplates, TheDemoTemplateLoadsWithItsLayers) {
  auto tmpl = LoadImageTemplateFile(fs::path(testing::DemoImagesDir()) / "welcome-hero.yaml");
  ASSERT_TRUE(tmpl) << tmpl.error().ToString();
  EXPECT_EQ(tmpl->id(), "welcome-hero");
  EXPECT_EQ(tmpl->width(), 1200);
  EXPECT_EQ(tmpl->height(), 600);
  EXPECT_EQ(tmpl->default_format(), ImageFormat::kPng);
  ASSERT_EQ(tmpl->layers().size(), 3u);
  const ImageLayer& title = tmpl->layers()[0];
  EXPECT_EQ(title.kind, ImageLayer::Kind::kText);
  EXPECT_EQ(title.source, "Welcome home, {{ contact.traits.first_name | default: 'friend' }}!");
  EXPECT_NE(title.source_where.find("welcome-hero.yaml:10:11"), std::string::npos)
      << title.source_where;
  EXPECT_EQ(title.font, "DejaVu Sans Bold");
  EXPECT_EQ(title.size, 56);
  EXPECT_EQ(title.color, (Rgba{255, 255, 255, 255}));
  EXPECT_EQ(title.align, HAlign::kCenter);
  EXPECT_EQ(title.valign, VAlign::kMiddle);
  EXPECT_EQ(title.max_lines, 2);
  EXPECT_TRUE(title.shrink_to_fit);
  EXPECT_EQ(title.fallback, "Welcome home!");
  EXPECT_EQ(tmpl->layers()[2].kind, ImageLayer::Kind::kQr);
  EXPECT_EQ(tmpl->layers()[2].source, "{{ message.view_in_browser_url }}");
  EXPECT_FALSE(tmpl->base_bytes().empty());
}

TEST(ImageTemplates, VersionChangesWithTheTemplateAndItsAssets) {
  TempDir dir;
  const std::string yaml = "id: v\nbase: base.png\n";
  dir.Write("base.png", ReadFile(fs::path(testing::FixturesDir()) / "base.png"));
  auto first = ParseImageTemplate(yaml, "v.yaml", dir.path());
  auto again = ParseImageTemplate(yaml, "v.yaml", dir.path());
  ASSERT_TRUE(first && again);
  EXPECT_EQ(first->version(), again->version());
  EXPECT_EQ(first->version().size(), 64u);

  auto edited = ParseImageTemplate(yaml + "format: jpg\n", "v.yaml", dir.path());
  ASSERT_TRUE(edited);
  EXPECT_NE(edited->version(), first->version());

  dir.Write("base.png", ReadFile(fs::path(testing::FixturesDir()) / "badge.png"));
  auto new_asset = ParseImageTemplate(yaml, "v.yaml", dir.path());
  ASSERT_TRUE(new_asset);
  EXPECT_NE(new_asset->version(), first->version());
}

// DejaVu Serif Bold renamed "Nudge Brandz" (same length, in the name table's ASCII and UTF-16
// strings): a font that only the template brings.
std::string BrandFont(const std::string& ttf) {
  std::string font = ttf;
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (size_t at = font.find(from); at != std::string::npos; at = font.find(from, at))
      font.replace(at, from.size(), to);
  };
  auto utf16 = [](const std::string& ascii) {
    std::string out;
    for (char c : ascii) out += std::string(1, '\0') + c;
    return out;
  };
  replace_all("DejaVu Serif", "Nudge Brandz");
  replace_all(utf16("DejaVu Serif"), utf16("Nudge Brandz"));
  return font;
}

TEST(ImageTemplates, AFontFileBesideTheTemplateIsUsedByItsOwnName) {
  TempDir dir;
  const fs::path serif = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf";
  if (!fs::exists(serif)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  ASSERT_FALSE(internal::CheckFontInstalled("Nudge Brandz").ok());
  dir.Write("brand.ttf", BrandFont(ReadFile(serif)));
  dir.Write("notes.ttf", "this is not a font");
  const std::string yaml =
      "id: f\ncanvas: { width: 300, height: 60 }\nlayers:\n  - text: Brand\n"
      "    font_file: brand.ttf\n    size: 40\n    box: { x: 0, y: 0, width: 300, height: 60 }\n";
  auto tmpl = ParseImageTemplate(yaml, "f.yaml", dir.path());
  ASSERT_TRUE(tmpl) << tmpl.error().ToString();
  EXPECT_EQ(tmpl->layers()[0].font, "Nudge Brandz Bold");
  EXPECT_EQ(tmpl->layers()[0].font_file, fs::absolute(dir.path() / "brand.ttf").string());
  // The file is this template's: another template (another workspace's, or one loaded before
  // this one at the next start) cannot name its family as if it were installed.
  EXPECT_FALSE(internal::CheckFontInstalled("Nudge Brandz").ok());
  std::string by_name = yaml;
  by_name.replace(by_name.find("font_file: brand.ttf"), 20, "font: 'Nudge Brandz Bold'");
  auto named = ParseImageTemplate(by_name, "f.yaml", dir.path());
  ASSERT_FALSE(named);
  EXPECT_NE(named.error().message().find("'Nudge Brandz' is not installed"), std::string::npos)
      << named.error().ToString();

  // Drawn with the file's glyphs: as DejaVu Serif Bold draws, unlike the default font.
  auto with_font = [&](const std::string& font) {
    std::string other = yaml;
    other.replace(other.find("font_file: brand.ttf"), 20, "font: '" + font + "'");
    auto t = ParseImageTemplate(other, "f.yaml", dir.path());
    EXPECT_TRUE(t) << t.error().ToString();
    return Render(*t, Vars({}))->bytes;
  };
  auto image = Render(*tmpl, Vars({}));
  ASSERT_TRUE(image) << image.error().ToString();
  EXPECT_EQ(image->bytes, with_font("DejaVu Serif Bold"));
  EXPECT_NE(image->bytes, with_font("DejaVu Sans"));

  std::string bad = yaml;
  bad.replace(bad.find("brand.ttf"), 9, "notes.ttf");
  auto refused = ParseImageTemplate(bad, "f.yaml", dir.path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().where(), "f.yaml:5:16");
  EXPECT_NE(refused.error().message().find("not a font file"), std::string::npos);

  std::string both = yaml;
  both.insert(both.find("    font_file"), "    font: Serif\n");
  ASSERT_FALSE(ParseImageTemplate(both, "f.yaml", dir.path()));
}

TEST(ImageTemplates, ATemplateWithoutLayersServesItsBase) {
  auto tmpl = Parse("id: t\nbase: base.png\nlayers: []\n");
  ASSERT_TRUE(tmpl) << tmpl.error().ToString();
  EXPECT_TRUE(tmpl->layers().empty());
  auto image = Render(*tmpl, Vars({}), ImageFormat::kPng);
  ASSERT_TRUE(image) << image.error().ToString();
  EXPECT_EQ(image->content_type(), "image/png");
}

// --- rendering -------------------------------------------------------------------------------

TEST(ImageRender, EachFormatHasItsSignatureAndContentType) {
  const ImageTemplate ticket = Fixture("ticket");
  const auto vars = Vars({{"name", "Ada"}, {"url", "https://acme.test/t/1"}});
  auto png = Render(ticket, vars);  // the template's default: png
  ASSERT_TRUE(png) << png.error().ToString();
  EXPECT_EQ(png->format, ImageFormat::kPng);
  EXPECT_EQ(png->content_type(), "image/png");
  EXPECT_EQ(png->bytes.substr(1, 3), "PNG");
  auto jpg = Render(ticket, vars, ImageFormat::kJpeg);
  ASSERT_TRUE(jpg);
  EXPECT_EQ(jpg->content_type(), "image/jpeg");
  EXPECT_EQ(jpg->bytes.substr(0, 3), "\xFF\xD8\xFF");
  auto webp = Render(ticket, vars, ImageFormat::kWebp);
  ASSERT_TRUE(webp);
  EXPECT_EQ(webp->content_type(), "image/webp");
  EXPECT_EQ(webp->bytes.substr(8, 4), "WEBP");

  EXPECT_EQ(*ParseImageFormat("JPEG"), ImageFormat::kJpeg);
  EXPECT_EQ(*ParseImageFormat("jpg"), ImageFormat::kJpeg);
  EXPECT_EQ(*ParseImageFormat("webp"), ImageFormat::kWebp);
  EXPECT_FALSE(ParseImageFormat("gif"));
}

TEST(ImageRender, TheCallbackSeesEachLayerAndItsErrorsFailTheRender) {
  const ImageTemplate ticket = Fixture("ticket");
  std::vector<std::pair<size_t, std::string>> seen;
  auto ok = Render(ticket, [&](size_t i, std::string_view source) -> Result<std::string> {
    seen.emplace_back(i, std::string(source));
    return std::string("x");
  });
  ASSERT_TRUE(ok) << ok.error().ToString();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1], (std::pair<size_t, std::string>{1, "{{ name }}"}));
  EXPECT_EQ(seen[2], (std::pair<size_t, std::string>{2, "{{ url }}"}));

  auto failed = Render(ticket, [](size_t i, std::string_view) -> Result<std::string> {
    if (i == 1) return Err(Status::Invalid("undefined filter", "1:9"));
    return std::string("x");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().where(), "layers[1].1:9");
  EXPECT_EQ(failed.error().message(), "undefined filter");
}

TEST(ImageRender, BlankTextTakesTheLayersFallback) {
  const ImageTemplate ticket = Fixture("ticket");
  auto texts = RenderLayerTexts(ticket, Vars({{"name", "  \n"}, {"url", "https://a.test"}}));
  ASSERT_TRUE(texts) << texts.error().ToString();
  EXPECT_EQ((*texts)[1], "Guest");
  auto named = RenderLayerTexts(ticket, Vars({{"name", "Ada"}, {"url", "https://a.test"}}));
  EXPECT_EQ((*named)[1], "Ada");
}

// Text longer than a layer may have whatever the contact is refused when saved: it would fail
// every render.
TEST(ImageTemplates, TextTooLongForEveryContactIsRefused) {
  const std::string long_text(kMaxLayerTextBytes + 1, 'a');
  auto literal = Parse("id: t\nbase: base.png\nlayers:\n  - text: " + long_text +
                       "\n    box: { x: 0, y: 0, width: 100, height: 40 }\n");
  ASSERT_FALSE(literal);
  EXPECT_EQ(literal.error().where(), "t.yaml:4:11") << literal.error().ToString();
  EXPECT_NE(literal.error().message().find("4097 bytes (at most 4096)"), std::string::npos)
      << literal.error().ToString();
  auto fallback =
      Parse("id: t\nbase: base.png\nlayers:\n  - text: '{{ name }}'\n    fallback: " + long_text +
            "\n    box: { x: 0, y: 0, width: 100, height: 40 }\n");
  ASSERT_FALSE(fallback);
  EXPECT_NE(fallback.error().message().find("fallback"), std::string::npos)
      << fallback.error().ToString();
  // With Liquid in it, only the rendered text counts (below).
  auto liquid = Parse("id: t\nbase: base.png\nlayers:\n  - text: '{{ name }}" + long_text +
                      "'\n    box: { x: 0, y: 0, width: 100, height: 40 }\n");
  EXPECT_TRUE(liquid) << liquid.error().ToString();
}

TEST(ImageRender, OversizedAndInvalidTextIsHandled) {
  const ImageTemplate ticket = Fixture("ticket");
  auto long_text = RenderLayerTexts(
      ticket, Vars({{"name", std::string(kMaxLayerTextBytes + 1, 'a')}, {"url", "u"}}));
  ASSERT_FALSE(long_text);
  EXPECT_EQ(long_text.error().code(), Code::kTooLarge);
  EXPECT_EQ(long_text.error().where(), "layers[1]");

  auto invalid = RenderLayerTexts(
      ticket, Vars({{"name", std::string("Ad\xC3\x28 \xFF") + '\0' + "a"}, {"url", "u"}}));
  ASSERT_TRUE(invalid);
  EXPECT_EQ((*invalid)[1],
            "Ad\xEF\xBF\xBD( \xEF\xBF\xBD\xEF\xBF\xBD"
            "a");
  EXPECT_TRUE(RenderImage(ticket, *invalid, ImageFormat::kPng));
}

TEST(ImageRender, AQrCodeThatDoesNotFitFailsAndTheFallbackIsServed) {
  auto tmpl = Parse(
      "id: t\nbase: base.png\nfallback: badge.png\nlayers:\n  - qr: '{{ url }}'\n"
      "    box: { x: 0, y: 0, width: 40, height: 40 }\n");
  ASSERT_TRUE(tmpl) << tmpl.error().ToString();
  auto image =
      Render(*tmpl, Vars({{"url", "https://acme.test/a/rather/long/path/for/a/small/box"}}));
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().where(), "layers[0]");
  EXPECT_NE(image.error().message().find("its box is 40x40"), std::string::npos)
      << image.error().ToString();
  auto empty = Render(*tmpl, Vars({}));
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("empty"), std::string::npos);

  // The fallback asset, as it is for PNG and converted for the others.
  const std::string badge = ReadFile(fs::path(testing::FixturesDir()) / "badge.png");
  EXPECT_EQ(tmpl->FallbackBytes(ImageFormat::kPng).bytes, badge);
  const EncodedImage& jpg = tmpl->FallbackBytes(ImageFormat::kJpeg);
  EXPECT_EQ(jpg.format, ImageFormat::kJpeg);
  EXPECT_EQ(jpg.bytes.substr(0, 3), "\xFF\xD8\xFF");
  EXPECT_EQ(&jpg, &tmpl->FallbackBytes(ImageFormat::kJpeg));  // converted once
  EXPECT_EQ(tmpl->FallbackBytes(ImageFormat::kWebp).content_type(), "image/webp");
}

TEST(ImageRender, WithoutAFallbackAssetTheBaseOrCanvasIsTheFallback) {
  auto based = Parse("id: t\nbase: base.png\n");
  ASSERT_TRUE(based);
  EXPECT_EQ(based->FallbackBytes(ImageFormat::kPng).bytes, based->base_bytes());
  auto canvas = Parse("id: t\ncanvas: { width: 20, height: 10, background: '#ff0000' }\n");
  ASSERT_TRUE(canvas);
  const EncodedImage& png = canvas->FallbackBytes(ImageFormat::kPng);
  EXPECT_EQ(png.content_type(), "image/png");
  EXPECT_EQ(png.bytes.substr(1, 3), "PNG");
}

TEST(ImageRender, RendersFromManyThreadsAreIdentical) {
  const ImageTemplate ticket = Fixture("ticket");
  const auto vars = Vars({{"name", "Ada Lovelace"}, {"url", "https://acme.test/t/42"}});
  auto reference = Render(ticket, vars, ImageFormat::kPng);
  ASSERT_TRUE(reference);
  std::atomic<int> same{0}, different{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto image = Render(ticket, vars, ImageFormat::kPng);
        (image && image->bytes == reference->bytes ? same : different)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(same.load(), 20);
  EXPECT_EQ(different.load(), 0);
}

// --- text layout -----------------------------------------------------------------------------

ImageLayer TextLayer(int width, int height, double size) {
  ImageLayer layer;
  layer.font = "DejaVu Sans";
  layer.size = size;
  layer.min_size = 8;
  layer.box = {0, 0, width, height};
  return layer;
}

const std::string kLong =
    "Your neighbourhood guide is ready: cafés, parks, schools and every bakery within walking "
    "distance of your new home, with opening hours and a map.";

TEST(TextLayout, MaxLinesCutsWithAnEllipsis) {
  ImageLayer layer = TextLayer(400, 400, 24);
  auto free = internal::FitText(layer, kLong);
  ASSERT_TRUE(free);
  EXPECT_GT(free->lines, 2);
  EXPECT_FALSE(free->ellipsized);
  layer.max_lines = 2;
  auto cut = internal::FitText(layer, kLong);
  EXPECT_EQ(cut->lines, 2);
  EXPECT_TRUE(cut->ellipsized);
}

TEST(TextLayout, TheBoxHeightLimitsTheLines) {
  auto fit = internal::FitText(TextLayer(400, 64, 24), kLong);
  ASSERT_TRUE(fit);
  EXPECT_EQ(fit->lines, 2);  // 28-pixel lines: two fit in 64
  EXPECT_TRUE(fit->ellipsized);
  EXPECT_LE(fit->height, 64);
}

TEST(TextLayout, LineBreaksCountAgainstMaxLines) {
  ImageLayer layer = TextLayer(400, 400, 20);
  layer.max_lines = 3;
  auto fit = internal::FitText(layer, "one\ntwo\r\nthree\nfour");
  ASSERT_TRUE(fit);
  EXPECT_EQ(fit->lines, 3);
  EXPECT_TRUE(fit->ellipsized);
  layer.max_lines = 4;
  EXPECT_FALSE(internal::FitText(layer, "one\ntwo\r\nthree\nfour")->ellipsized);
}

TEST(TextLayout, WithoutWrappingEachLineIsCutAtTheBoxWidth) {
  ImageLayer layer = TextLayer(200, 400, 20);
  layer.wrap = false;
  auto fit = internal::FitText(layer, kLong);
  ASSERT_TRUE(fit);
  EXPECT_EQ(fit->lines, 1);
  EXPECT_TRUE(fit->ellipsized);
  auto two = internal::FitText(layer, "short\nalso short");
  EXPECT_EQ(two->lines, 2);
  EXPECT_FALSE(two->ellipsized);
  layer.max_lines = 1;
  auto one = internal::FitText(layer, "short\nalso short");
  EXPECT_EQ(one->lines, 1);
  EXPECT_TRUE(one->ellipsized);
}

TEST(TextLayout, ShrinkToFitFindsASizeThatShowsEverything) {
  ImageLayer layer = TextLayer(300, 120, 48);
  layer.shrink_to_fit = true;
  layer.min_size = 10;
  auto fit = internal::FitText(layer, kLong);
  ASSERT_TRUE(fit);
  EXPECT_LT(fit->size, 48);
  EXPECT_GE(fit->size, 10);
  EXPECT_FALSE(fit->ellipsized);
  EXPECT_LE(fit->height, 120);
  // One pixel larger would not fit.
  ImageLayer larger = layer;
  larger.shrink_to_fit = false;
  larger.size = fit->size + 1;
  EXPECT_TRUE(internal::FitText(larger, kLong)->ellipsized);

  // Short text keeps its size; text too long even at min_size is cut at min_size.
  EXPECT_EQ(internal::FitText(layer, "Hi Ada")->size, 48);
  layer.min_size = 30;
  auto cut = internal::FitText(layer, kLong);
  EXPECT_EQ(cut->size, 30);
  EXPECT_TRUE(cut->ellipsized);
}

TEST(TextLayout, MarkupInTextIsNotInterpreted) {
  // As markup, this would be one huge glyph; as text it is a line of small ones.
  ImageLayer layer = TextLayer(2000, 100, 16);
  auto fit = internal::FitText(layer, "<span size='300000'>W</span> & <b>x</b>");
  ASSERT_TRUE(fit);
  EXPECT_EQ(fit->lines, 1);
  EXPECT_LT(fit->height, 30);
  EXPECT_FALSE(fit->ellipsized);
}

// --- cache -----------------------------------------------------------------------------------

TEST(ImageCacheTest, ContactsWithTheSameTextsShareOneImage) {
  const ImageTemplate ticket = Fixture("ticket");
  ImageCache cache(size_t{8} << 20);
  auto ada1 = cache.Render(ticket, Vars({{"name", "Ada"}, {"url", "https://a.test/x"}}));
  auto ada2 = cache.Render(ticket, Vars({{"name", "Ada"}, {"url", "https://a.test/x"}}));
  ASSERT_TRUE(ada1 && ada2);
  EXPECT_EQ(ada1->get(), ada2->get());
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 1u);

  auto grace = cache.Render(ticket, Vars({{"name", "Grace"}, {"url", "https://a.test/x"}}));
  ASSERT_TRUE(grace);
  EXPECT_NE(grace->get(), ada1->get());
  auto ada_jpg = cache.Render(ticket, Vars({{"name", "Ada"}, {"url", "https://a.test/x"}}),
                              ImageFormat::kJpeg);
  ASSERT_TRUE(ada_jpg);
  EXPECT_EQ((*ada_jpg)->format, ImageFormat::kJpeg);
  const auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 3u);
  EXPECT_EQ(stats.entries, 3u);
  EXPECT_GT(stats.bytes, (*ada1)->bytes.size() + (*grace)->bytes.size());

  // The key splits texts unambiguously.
  EXPECT_NE(ImageCache::Key(ticket, {"ab", "c", ""}, ImageFormat::kPng),
            ImageCache::Key(ticket, {"a", "bc", ""}, ImageFormat::kPng));
}

TEST(ImageCacheTest, EvictsLeastRecentlyUsedWithinItsBytes) {
  const ImageTemplate ticket = Fixture("ticket");
  auto one = Render(ticket, Vars({{"name", "Name 0"}, {"url", "u"}}));
  ASSERT_TRUE(one);
  const size_t budget = one->bytes.size() * 3 + 1024;  // about three images
  ImageCache cache(budget);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(cache.Render(ticket, Vars({{"name", "Name " + std::to_string(i)}, {"url", "u"}})));
    // Keep "Name 0" recently used.
    ASSERT_TRUE(cache.Render(ticket, Vars({{"name", "Name 0"}, {"url", "u"}})));
    EXPECT_LE(cache.stats().bytes, budget);
  }
  const auto stats = cache.stats();
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_LE(stats.entries, 3u);
  const uint64_t hits = stats.hits;
  ASSERT_TRUE(cache.Render(ticket, Vars({{"name", "Name 0"}, {"url", "u"}})));
  EXPECT_EQ(cache.stats().hits, hits + 1);  // still there
  ASSERT_TRUE(cache.Render(ticket, Vars({{"name", "Name 1"}, {"url", "u"}})));
  EXPECT_EQ(cache.stats().hits, hits + 1);  // evicted long ago

  cache.Clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);

  ImageCache tiny(100);  // an image larger than the whole cache is served, not kept
  ASSERT_TRUE(tiny.Render(ticket, Vars({{"name", "Ada"}, {"url", "u"}})));
  EXPECT_EQ(tiny.stats().entries, 0u);
}

TEST(ImageCacheTest, FailuresAreNotCached) {
  const ImageTemplate ticket = Fixture("ticket");
  ImageCache cache;
  EXPECT_FALSE(cache.Render(ticket, Vars({{"name", "Ada"}})));  // no url: the QR code fails
  EXPECT_FALSE(cache.Render(ticket, Vars({{"name", "Ada"}})));
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(ImageCacheTest, ConcurrentRendersShareEntries) {
  const ImageTemplate ticket = Fixture("ticket");
  ImageCache cache;
  std::mutex mutex;
  std::map<std::string, std::set<std::string>> bytes_by_name;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string name = "Contact " + std::to_string((t + i) % 3);
        auto image = cache.Render(ticket, Vars({{"name", name}, {"url", "https://a.test/"}}));
        ASSERT_TRUE(image);
        std::lock_guard lock(mutex);
        bytes_by_name[name].insert((*image)->bytes);
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto stats = cache.stats();
  EXPECT_EQ(stats.hits + stats.misses, 40u);
  EXPECT_EQ(stats.entries, 3u);
  EXPECT_GE(stats.hits, 28u);  // at most one concurrent miss per thread and name
  for (const auto& [name, images] : bytes_by_name) EXPECT_EQ(images.size(), 1u) << name;
}

}  // namespace
}  // namespace nudge::content
