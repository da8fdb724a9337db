#include "content/template.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace nudge::content {
namespace {

using nlohmann::json;

Result<RenderedMessage> Render(const MessageTemplate& t, const json& ctx,
                               const PartialLookup* partials = nullptr,
                               std::shared_ptr<const Template> layout = nullptr) {
  auto c = Context::FromJson(ctx);
  if (!c) return Err(c.error());
  TemplateRenderOptions o;
  o.partials = partials;
  o.layout = layout;
  return RenderTemplate(t, *c, o);
}

TEST(Template, EmailPartsLocalesAndTextFromHtml) {
  auto t = ParseTemplate(R"(id: welcome
channel: email
subject: "Welcome, {{ contact.traits.first_name | default: 'friend' }}"
preheader: Three things to try
html: "<p>Hi {{ contact.traits.first_name }} &amp; {{ contact.traits.company }}</p><p><a href='https://acme.test/start'>Start</a></p>"
locales:
  de:
    subject: "Willkommen, {{ contact.traits.first_name }}"
)",
                         "templates/welcome.yaml", std::nullopt);
  ASSERT_TRUE(t) << t.error().ToString();
  json ctx = {{"contact", {{"traits", {{"first_name", "Ann"}, {"company", "<Acme & Co>"}}}}}};
  auto r = Render(**t, ctx);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->subject, "Welcome, Ann");
  EXPECT_EQ(r->preheader, "Three things to try");
  EXPECT_EQ(r->html,
            "<p>Hi Ann &amp; &lt;Acme &amp; Co&gt;</p><p><a "
            "href='https://acme.test/start'>Start</a></p>");
  EXPECT_EQ(r->text, "Hi Ann & <Acme & Co>\n\nStart (https://acme.test/start)\n");
  EXPECT_EQ(r->locale, "");

  ctx["contact"]["traits"]["locale"] = "de-AT";
  r = Render(**t, ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->locale, "de");
  EXPECT_EQ(r->subject, "Willkommen, Ann");
  EXPECT_NE(r->html.find("Hi Ann"), std::string::npos)
      << "parts a locale leaves out come from the template";
}

TEST(Template, SmsBodyCountsSegments) {
  auto t = ParseTemplate(
      "id: code\nchannel: sms\nbody: \"Your code is {{ event.properties.code }} \\U0001F511\"\n",
      "s", std::nullopt);
  ASSERT_TRUE(t) << t.error().ToString();
  auto r = Render(**t, {{"event", {{"properties", {{"code", 1234}}}}}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "Your code is 1234 \xF0\x9F\x94\x91");
  EXPECT_EQ(r->sms_segments, 1);
  EXPECT_EQ(r->sms_encoding, "UCS-2");
}

TEST(Template, ErrorsPointIntoTheDocument) {
  auto t =
      ParseTemplate("id: x\nchannel: email\nsubject: ok\nhtml: |\n  <p>fine</p>\n  {% if a %}\n",
                    "templates/x.yaml", std::nullopt);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("html"), std::string::npos) << t.error().ToString();
  EXPECT_EQ(t.error().where().rfind("templates/x.yaml:", 0), 0u) << t.error().where();

  t = ParseTemplate("id: x\nsubject: '{{ a | no_such_filter }}'\nhtml: x\n", "t.yaml",
                    std::nullopt);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("no_such_filter"), std::string::npos) << t.error().ToString();
  EXPECT_EQ(t.error().where().rfind("t.yaml:2:", 0), 0u) << t.error().where();

  EXPECT_FALSE(ParseTemplate("id: x\nchannel: sms\nhtml: x\n", "t", std::nullopt));
  EXPECT_FALSE(ParseTemplate("id: x\nchannel: fax\nbody: x\n", "t", std::nullopt));
  EXPECT_FALSE(ParseTemplate("id: x\nchannel: email\n", "t", std::nullopt));
  EXPECT_FALSE(ParseTemplate("id: x\nhtml: x\ncolour: red\n", "t", std::nullopt));
  EXPECT_FALSE(ParseTemplate("id: Bad Id\nhtml: x\n", "t", std::nullopt));
  auto mismatch = ParseTemplate("id: a\nhtml: x\n", "t", std::string_view("b"));
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message().find("differs"), std::string::npos);
}

TEST(Template, UnknownPartialsAreRefusedWhenChecked) {
  TemplateEnv env;
  env.partial_exists = [](std::string_view name) { return name == "footer"; };
  EXPECT_TRUE(ParseTemplate("id: a\nhtml: \"{% render 'footer' %}\"\n", "t", std::nullopt, env));
  auto t = ParseTemplate("id: a\nhtml: \"{% render 'header' %}\"\n", "t", std::nullopt, env);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("header"), std::string::npos);
  EXPECT_FALSE(ParseTemplate("id: a\nlayout: base\nhtml: x\n", "t", std::nullopt, env));
}

TEST(Template, LayoutWrapsTheHtml) {
  auto layout = Template::Compile(
      "<html><body>{{ content }}<footer>{{ contact.traits.first_name }}</footer></body></html>");
  ASSERT_TRUE(layout);
  auto t =
      ParseTemplate("id: a\nlayout: base\nhtml: \"<p>{{ contact.traits.first_name }} & co</p>\"\n",
                    "t", std::nullopt);
  ASSERT_TRUE(t) << t.error().ToString();
  auto r = Render(**t, {{"contact", {{"traits", {{"first_name", "<b>"}}}}}}, nullptr, *layout);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->html, "<html><body><p>&lt;b&gt; & co</p><footer>&lt;b&gt;</footer></body></html>");
}

TEST(Template, NudgeFilters) {
  auto t = ParseTemplate(R"(id: f
channel: sms
body: "{{ 1234.5 | money }}|{{ 9.99 | money: 'EUR' }}|{{ 500 | money: 'JPY' }}|{{ '2026-03-29T00:30:00Z' | local_time: '%Y-%m-%d %H:%M %Z' }}|{{ 'hero' | image_url }}|{{ 'hero' | image_url: 'JPEG' }}"
)",
                         "t", std::nullopt);
  ASSERT_TRUE(t) << t.error().ToString();
  RenderEnv env;
  env.image_url = [](std::string_view image, std::string_view format) {
    return "https://n.test/i/" + std::string(image) + "/tok" +
           (format.empty() ? "" : "." + std::string(format));
  };
  RenderScope scope(&env);
  auto r = Render(**t, {{"contact", {{"traits", {{"timezone", "Europe/Berlin"}}}}}});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->body,
            "$1,234.50|\xE2\x82\xAC"
            "9.99|\xC2\xA5"
            "500|2026-03-29 01:30 CET|https://n.test/i/hero/tok|https://n.test/i/hero/tok.jpg");
}

// A price kept as text: a whole number is an amount; text that only starts with one is not,
// and passes through rather than print a wrong price.
TEST(Template, MoneyReadsOnlyWholeNumbers) {
  auto t = ParseTemplate(R"(id: m
channel: sms
body: "{{ p1 | money }}|{{ p2 | money }}|{{ p3 | money }}|{{ p4 | money }}|{{ p5 | money }}|{{ -0.001 | money }}|{{ 0 | times: -1.0 | money: 'SEK' }}|{{ -0.004 | money: 'JPY' }}"
)",
                         "t", std::nullopt);
  ASSERT_TRUE(t) << t.error().ToString();
  auto r = Render(
      **t, {{"p1", " 12.50 "}, {"p2", "1,234.50"}, {"p3", "12abc"}, {"p4", "inf"}, {"p5", "-3"}});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->body,
            "$12.50|1,234.50|12abc|inf|-$3.00|$0.00|0.00 kr|\xC2\xA5"
            "0");
}

// A format image_url can never serve, written as a literal, is refused when the template is
// saved, at its position; one in a variable is checked when it renders.
TEST(Template, ImageUrlFormatIsCheckedWhenSaved) {
  auto t = ParseTemplate("id: g\nchannel: sms\nbody: \"{{ 'hero' | image_url: 'gif' }}\"\n",
                         "t.yaml", std::nullopt);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().where(), "t.yaml:3:20");
  EXPECT_NE(t.error().message().find("image_url"), std::string::npos) << t.error().ToString();
  EXPECT_NE(t.error().message().find("png, jpg or webp, not 'gif'"), std::string::npos);
  auto v = ParseTemplate("id: g\nchannel: sms\nbody: \"{{ 'hero' | image_url: fmt }}\"\n", "t.yaml",
                         std::nullopt);
  ASSERT_TRUE(v) << v.error().ToString();
  RenderEnv env;
  env.image_url = [](std::string_view, std::string_view) { return std::string("u"); };
  RenderScope scope(&env);
  auto r = Render(**v, {{"fmt", "gif"}});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_NE(r->body.find("png, jpg or webp, not 'gif'"), std::string::npos) << r->body;
}

}  // namespace
}  // namespace nudge::content
