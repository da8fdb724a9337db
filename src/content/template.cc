#include "content/template.h"

#include <cctz/civil_time.h>
#include <cctz/time_zone.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "content/text.h"
#include "core/time.h"
#include "core/yaml.h"

namespace nudge::content {
namespace {

using core::YamlDoc;

thread_local const RenderEnv* current_env = nullptr;

Status CheckTemplateId(std::string_view id, const std::string& where) {
  if (id.empty() || id.size() > 64)
    return Status::Invalid("id: a template id has 1 to 64 characters", where);
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '-' || c == '_'));
    if (!ok)
      return Status::Invalid(
          "id: '" + std::string(id) + "' is not an id: use lowercase letters, digits, '-' and '_'",
          where);
  }
  return Status::Ok();
}

// Compiles the Liquid of one field; errors point into the YAML document.
Result<std::shared_ptr<const Template>> CompilePart(const YamlDoc& doc, const YAML::Node& map,
                                                    const char* key, const std::string& path,
                                                    const CompileOptions& options,
                                                    std::vector<std::string>& partials) {
  const YAML::Node node = map[key];
  if (!node.IsDefined() || node.IsNull()) return std::shared_ptr<const Template>();
  if (!node.IsScalar())
    return Err(doc.ErrorAt(node, path, "expected a string (Liquid template text)"));
  const std::string text = node.as<std::string>();
  auto compiled = Template::Compile(text, options);
  if (!compiled) {
    const std::string where = compiled.error().where().empty()
                                  ? doc.Where(node)
                                  : doc.WhereInside(node, compiled.error().where());
    return Err(Status::Invalid(path + ": " + compiled.error().message(), where));
  }
  for (const auto& p : (*compiled)->partial_names()) {
    if (std::find(partials.begin(), partials.end(), p) == partials.end()) partials.push_back(p);
  }
  return *compiled;
}

constexpr std::string_view kPartKeys[] = {"subject", "preheader", "from", "reply_to",
                                          "html",    "text",      "body"};

Status ParseParts(const YamlDoc& doc, const YAML::Node& map, const std::string& prefix,
                  const CompileOptions& options, TemplateParts& parts,
                  std::vector<std::string>& partials) {
  auto part = [&](const char* key, std::shared_ptr<const Template>& out) -> Status {
    auto r = CompilePart(doc, map, key, prefix + key, options, partials);
    if (!r) return r.error();
    out = std::move(*r);
    return Status::Ok();
  };
  NUDGE_TRY(part("subject", parts.subject));
  NUDGE_TRY(part("preheader", parts.preheader));
  NUDGE_TRY(part("from", parts.from));
  NUDGE_TRY(part("reply_to", parts.reply_to));
  NUDGE_TRY(part("html", parts.html));
  NUDGE_TRY(part("text", parts.text));
  NUDGE_TRY(part("body", parts.body));
  return Status::Ok();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// ---- nudge's filters ----

// A number from a Liquid value (numbers, numeric strings); nullopt otherwise.
std::optional<double> NumberOf(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kInt:
      return static_cast<double>(v.AsInt());
    case ValueKind::kFloat:
      return v.AsFloat();
    case ValueKind::kString: {
      // The whole text, as a plain decimal number: "1,234.50" or "12abc" is no amount (read
      // as 1 or 12 it would print a wrong price), and neither is "inf" or "0x10".
      std::string_view t = v.AsString();
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (t.empty() || t.find_first_not_of("0123456789+-.eE") != std::string_view::npos)
        return std::nullopt;
      std::string s(t);
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (end != s.c_str() + s.size()) return std::nullopt;
      return d;
    }
    default:
      return std::nullopt;
  }
}

struct Currency {
  const char* code;
  const char* symbol;
  int decimals;
  bool symbol_after;
};
constexpr Currency kCurrencies[] = {
    {"USD", "$", 2, false},    {"EUR", "€", 2, false},   {"GBP", "£", 2, false},
    {"JPY", "¥", 0, false},    {"CAD", "CA$", 2, false}, {"AUD", "A$", 2, false},
    {"CHF", "CHF ", 2, false}, {"INR", "₹", 2, false},   {"BRL", "R$", 2, false},
    {"SEK", " kr", 2, true},   {"NOK", " kr", 2, true},  {"DKK", " kr", 2, true},
    {"PLN", " zł", 2, true},   {"KRW", "₩", 0, false},   {"CNY", "CN¥", 2, false},
    {"MXN", "MX$", 2, false},
};

// "1234.5" → "1,234.50".
std::string GroupedNumber(double amount, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(amount));
  std::string digits(buf);
  const size_t dot = digits.find('.');
  std::string whole = digits.substr(0, dot);
  std::string grouped;
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i > 0 && (whole.size() - i) % 3 == 0) grouped += ',';
    grouped += whole[i];
  }
  if (dot != std::string::npos) grouped += digits.substr(dot);
  return grouped;
}

Result<Value> MoneyFilter(FilterCall& call) {
  const auto amount = NumberOf(call.input());
  if (!amount) return call.input();  // non-numbers pass through, as Liquid's math filters do
  std::string code = "USD";
  if (call.arg_count() > 0 && call.arg(0).is_string()) {
    code = std::string(call.arg(0).AsString());
  } else if (Value ws = call.Variable("workspace"); ws.kind() == ValueKind::kHash) {
    if (Value c = ws.Find("currency"); c.is_string()) code = std::string(c.AsString());
  }
  for (char& c : code)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  const Currency* cur = nullptr;
  for (const Currency& c : kCurrencies)
    if (code == c.code) cur = &c;
  const std::string number = GroupedNumber(*amount, cur ? cur->decimals : 2);
  // A minus only before an amount that shows: -0.001 is $0.00, not -$0.00.
  std::string out = *amount < 0 && number.find_first_not_of("0.,") != std::string::npos ? "-" : "";
  if (!cur) {
    out += code + " " + number;
  } else if (cur->symbol_after) {
    out += number + cur->symbol;
  } else {
    out += std::string(cur->symbol) + number;
  }
  return call.String(out);
}

// A time from a Liquid value: ISO-8601 text, "now", or seconds since the epoch.
std::optional<core::Millis> TimeOf(FilterCall& call, const Value& v) {
  if (v.is_string()) {
    const std::string_view s = v.AsString();
    if (s == "now" || s == "today") return call.now();
    auto t = core::ParseIso8601(s);
    if (t) return *t;
    return std::nullopt;
  }
  if (auto n = NumberOf(v)) return static_cast<core::Millis>(*n * 1000.0);
  return std::nullopt;
}

Result<Value> LocalTimeFilter(FilterCall& call) {
  const auto when = TimeOf(call, call.input());
  if (!when) return call.input();
  std::string format = "%Y-%m-%d %H:%M";
  if (call.arg_count() > 0 && call.arg(0).is_string()) format = std::string(call.arg(0).AsString());
  // The zone: an explicit second argument, the contact's `timezone` trait, the workspace's.
  std::string zone_name;
  if (call.arg_count() > 1 && call.arg(1).is_string()) {
    zone_name = std::string(call.arg(1).AsString());
  } else {
    if (Value contact = call.Variable("contact"); contact.kind() == ValueKind::kHash) {
      if (Value traits = contact.Find("traits"); traits.kind() == ValueKind::kHash) {
        if (Value tz = traits.Find("timezone"); tz.is_string()) zone_name = tz.AsString();
      }
    }
    if (zone_name.empty()) {
      if (Value ws = call.Variable("workspace"); ws.kind() == ValueKind::kHash) {
        if (Value tz = ws.Find("timezone"); tz.is_string()) zone_name = tz.AsString();
      }
    }
  }
  cctz::time_zone zone = cctz::utc_time_zone();
  if (!core::IsTimeZoneName(zone_name) || !cctz::load_time_zone(zone_name, &zone))
    zone = cctz::utc_time_zone();
  const auto tp = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>(
      std::chrono::milliseconds(*when));
  return call.String(cctz::format(format, tp, zone));
}

// The format an image_url argument names ("png", "jpg", "webp"; "jpeg" is "jpg"), or an error.
Result<std::string> ImageUrlFormat(std::string_view given) {
  std::string format;
  for (char ch : given) format += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (format == "jpeg") format = "jpg";
  if (format != "png" && format != "jpg" && format != "webp")
    return Err(Status::Invalid("the format is png, jpg or webp, not '" + std::string(given) + "'"));
  return format;
}

Result<Value> ImageUrlFilter(FilterCall& call) {
  if (!call.input().is_string() || !current_env || !current_env->image_url) return call.String("");
  // No format: the URL names none, and the image template's own `format` is served.
  std::string format;
  if (call.arg_count() > 0 && call.arg(0).is_string()) {
    auto named = ImageUrlFormat(call.arg(0).AsString());
    if (!named) return Err(Status::Invalid("image_url: " + named.error().message()));
    format = std::move(*named);
  }
  return call.String(current_env->image_url(call.input().AsString(), format));
}

// A format written as a literal is checked when the template is saved.
Status CheckImageUrl(const std::vector<std::optional<Value>>& args) {
  if (args.empty() || !args[0] || !args[0]->is_string()) return Status::Ok();
  auto named = ImageUrlFormat(args[0]->AsString());
  return named ? Status::Ok() : named.error();
}

}  // namespace

RenderScope::RenderScope(const RenderEnv* env) : previous_(current_env) { current_env = env; }
RenderScope::~RenderScope() { current_env = previous_; }

std::shared_ptr<const FilterRegistry> NudgeFilters() {
  static const std::shared_ptr<const FilterRegistry> registry = [] {
    auto r = std::make_shared<FilterRegistry>();
    (void)r->Add("money", MoneyFilter, 0, 1);
    (void)r->Add("local_time", LocalTimeFilter, 0, 2);
    (void)r->Add("image_url", ImageUrlFilter, 0, 1, CheckImageUrl);
    return std::shared_ptr<const FilterRegistry>(std::move(r));
  }();
  return registry;
}

Result<std::shared_ptr<const MessageTemplate>> ParseTemplate(std::string_view text,
                                                             std::string_view source,
                                                             std::optional<std::string_view> id,
                                                             const TemplateEnv& env) {
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(core::YamlKnownKeys(
      doc, root,
      {"id", "name", "description", "channel", "topic", "transactional", "layout", "subject",
       "preheader", "from", "reply_to", "html", "text", "body", "locales"}));
  auto t = std::make_shared<MessageTemplate>();
  t->source = std::string(text);
  NUDGE_ASSIGN_OR_RETURN(auto doc_id, core::YamlString(doc, root, "id"));
  if (doc_id && id && *doc_id != *id)
    return Err(doc.ErrorAt(root["id"], "id",
                           "'" + *doc_id + "' differs from '" + std::string(*id) + "' in the URL"));
  if (!doc_id && !id) return Err(Status::Invalid("id: is required", std::string(source)));
  t->id = doc_id ? *doc_id : std::string(*id);
  NUDGE_TRY(CheckTemplateId(t->id, doc_id ? doc.Where(root["id"]) : std::string(source)));
  NUDGE_ASSIGN_OR_RETURN(auto name, core::YamlString(doc, root, "name"));
  NUDGE_ASSIGN_OR_RETURN(auto description, core::YamlString(doc, root, "description"));
  NUDGE_ASSIGN_OR_RETURN(auto channel, core::YamlString(doc, root, "channel"));
  NUDGE_ASSIGN_OR_RETURN(auto topic, core::YamlString(doc, root, "topic"));
  NUDGE_ASSIGN_OR_RETURN(auto transactional, core::YamlBool(doc, root, "transactional"));
  NUDGE_ASSIGN_OR_RETURN(auto layout, core::YamlString(doc, root, "layout"));
  t->name = name.value_or(t->id);
  t->description = description.value_or("");
  t->channel = channel.value_or("email");
  if (t->channel != "email" && t->channel != "sms" && t->channel != "partial")
    return Err(doc.ErrorAt(root["channel"], "channel",
                           "'" + t->channel + "' is not a channel: email, sms or partial"));
  t->topic = topic.value_or("");
  if (!t->topic.empty()) NUDGE_TRY(CheckTemplateId(t->topic, doc.Where(root["topic"])));
  t->transactional = transactional.value_or(false);
  t->layout = layout.value_or("");

  CompileOptions options;
  options.filters = env.filters ? env.filters : NudgeFilters();
  NUDGE_TRY(ParseParts(doc, root, "", options, t->parts, t->partials));

  // Which parts a channel takes.
  auto refuse = [&](const char* key, const std::string& why) -> Status {
    const YAML::Node n = root[key];
    if (n.IsDefined() && !n.IsNull()) return doc.ErrorAt(n, key, why);
    return Status::Ok();
  };
  if (t->channel == "email") {
    NUDGE_TRY(refuse("body", "an email has html and text, not body"));
    if (!t->parts.html && !t->parts.text)
      return Err(Status::Invalid("an email template needs html or text", std::string(source)));
  } else {
    for (const char* key : {"subject", "preheader", "from", "reply_to", "html", "text"})
      NUDGE_TRY(refuse(key, "a " + t->channel + " template has a body only"));
    if (!t->layout.empty()) NUDGE_TRY(refuse("layout", "only email templates have a layout"));
    if (!t->parts.body)
      return Err(
          Status::Invalid("a " + t->channel + " template needs a body", std::string(source)));
    if (t->channel == "partial" && (!t->topic.empty() || t->transactional))
      return Err(
          Status::Invalid("a partial has no topic and is not transactional", std::string(source)));
  }

  if (const YAML::Node locales = root["locales"]; locales.IsDefined() && !locales.IsNull()) {
    if (!locales.IsMap() || t->channel == "partial")
      return Err(doc.ErrorAt(locales, "locales",
                             t->channel == "partial"
                                 ? "a partial has no locales"
                                 : "expected a mapping of locale → parts (de: { subject: ... })"));
    for (const auto& kv : locales) {
      const std::string tag = Lower(kv.first.as<std::string>());
      const std::string path = "locales." + tag + ".";
      bool tag_ok = !tag.empty() && tag.size() <= 35;
      for (char c : tag)
        tag_ok = tag_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-');
      if (!tag_ok)
        return Err(doc.ErrorAt(kv.first, "locales",
                               "'" + tag + "' is not a language tag (en, de, pt-br)"));
      if (!kv.second.IsMap())
        return Err(doc.ErrorAt(kv.second, path.substr(0, path.size() - 1),
                               "expected a mapping of parts (subject, html, ...)"));
      for (const auto& part : kv.second) {
        const std::string key = part.first.as<std::string>();
        if (std::find(std::begin(kPartKeys), std::end(kPartKeys), key) == std::end(kPartKeys))
          return Err(doc.ErrorAt(part.first, path + key,
                                 "unknown part; a locale sets subject, preheader, from, reply_to, "
                                 "html, text or body"));
        if (t->channel == "email" ? key == "body" : key != "body")
          return Err(
              doc.ErrorAt(part.first, path + key, "not a part of a " + t->channel + " template"));
      }
      TemplateParts parts;
      NUDGE_TRY(ParseParts(doc, kv.second, path, options, parts, t->partials));
      if (!t->locales.emplace(tag, std::move(parts)).second)
        return Err(doc.ErrorAt(kv.first, "locales", "'" + tag + "' appears twice"));
    }
  }
  if (!t->layout.empty()) t->partials.push_back(t->layout);
  if (env.partial_exists) {
    for (const auto& p : t->partials) {
      if (p == t->id)
        return Err(
            Status::Invalid("the template renders itself ('" + p + "')", std::string(source)));
      if (!env.partial_exists(p))
        return Err(
            Status::Invalid("partial '" + p + "' is not defined (a template with channel: partial)",
                            std::string(source)));
    }
  }
  return std::shared_ptr<const MessageTemplate>(std::move(t));
}

std::string ChooseLocale(const MessageTemplate& tmpl, std::string_view locale) {
  if (tmpl.locales.empty() || locale.empty()) return "";
  std::string want = Lower(locale);
  for (char& c : want)
    if (c == '_') c = '-';
  while (!want.empty()) {
    if (tmpl.locales.count(want)) return want;
    const size_t dash = want.rfind('-');
    if (dash == std::string::npos) break;
    want.resize(dash);
  }
  return "";
}

nlohmann::json RenderedMessage::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  j["locale"] = locale.empty() ? nlohmann::json(nullptr) : nlohmann::json(locale);
  if (!body.empty() || sms_segments > 0) {
    j["body"] = body;
    j["segments"] = sms_segments;
    j["encoding"] = sms_encoding;
    return j;
  }
  j["subject"] = subject;
  j["preheader"] = preheader;
  j["from"] = from.empty() ? nlohmann::json(nullptr) : nlohmann::json(from);
  j["reply_to"] = reply_to.empty() ? nlohmann::json(nullptr) : nlohmann::json(reply_to);
  j["html"] = html;
  j["text"] = text;
  return j;
}

Result<RenderedMessage> RenderTemplate(const MessageTemplate& tmpl, Context& context,
                                       const TemplateRenderOptions& options) {
  RenderedMessage out;
  std::string locale_trait;
  if (Value contact = context.Find("contact"); contact.kind() == ValueKind::kHash) {
    if (Value traits = contact.Find("traits"); traits.kind() == ValueKind::kHash) {
      if (Value l = traits.Find("locale"); l.is_string()) locale_trait = l.AsString();
    }
  }
  out.locale = ChooseLocale(tmpl, locale_trait);
  const TemplateParts* variant = out.locale.empty() ? nullptr : &tmpl.locales.at(out.locale);
  auto pick = [&](std::shared_ptr<const Template> TemplateParts::*part) {
    if (variant && variant->*part) return (variant->*part).get();
    return (tmpl.parts.*part).get();
  };
  RenderOptions text_mode;
  text_mode.partials = options.partials;
  text_mode.clock = options.clock;
  RenderOptions html_mode = text_mode;
  html_mode.html = true;
  auto render = [&](const Template* t, const char* name, const RenderOptions& o,
                    std::string& into) -> Status {
    if (!t) return Status::Ok();
    auto r = t->Render(context, o);
    if (!r) {
      return Status(r.error().code(), std::string(name) + ": " + r.error().message(),
                    r.error().where());
    }
    into = std::move(*r);
    return Status::Ok();
  };
  if (tmpl.channel != "email") {
    NUDGE_TRY(render(pick(&TemplateParts::body), "body", text_mode, out.body));
    if (tmpl.channel == "sms") {
      const SmsSize size = MeasureSms(out.body);
      out.sms_segments = size.segments;
      out.sms_encoding = size.encoding();
    }
    return out;
  }
  NUDGE_TRY(render(pick(&TemplateParts::subject), "subject", text_mode, out.subject));
  NUDGE_TRY(render(pick(&TemplateParts::preheader), "preheader", text_mode, out.preheader));
  NUDGE_TRY(render(pick(&TemplateParts::from), "from", text_mode, out.from));
  NUDGE_TRY(render(pick(&TemplateParts::reply_to), "reply_to", text_mode, out.reply_to));
  NUDGE_TRY(render(pick(&TemplateParts::html), "html", html_mode, out.html));
  NUDGE_TRY(render(pick(&TemplateParts::text), "text", text_mode, out.text));
  if (options.layout && !out.html.empty()) {
    // The layout sees everything the template saw, plus the rendered HTML as `content`, marked
    // safe: it was escaped when it was rendered.
    const std::string html = std::move(out.html);
    context.Set("content", context.String(html).WithSafe(true));
    auto r = options.layout->Render(context, html_mode);
    context.Set("content", Value());
    if (!r) return Err(Status(r.error().code(), "layout: " + r.error().message()));
    out.html = std::move(*r);
  }
  if (out.text.empty() && !out.html.empty()) out.text = HtmlToText(out.html);
  // Subjects and names are one line.
  for (std::string* s : {&out.subject, &out.preheader, &out.from, &out.reply_to}) {
    for (char& c : *s)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    const size_t a = s->find_first_not_of(' ');
    const size_t z = s->find_last_not_of(' ');
    *s = a == std::string::npos ? "" : s->substr(a, z - a + 1);
  }
  return out;
}

}  // namespace nudge::content
