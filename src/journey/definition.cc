#include "journey/definition.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "content/liquid.h"
#include "content/template.h"
#include "core/yaml.h"
#include "rules/condition_yaml.h"

namespace nudge::journey {
namespace {

using core::YamlDoc;
using nlohmann::json;

constexpr Millis kMinute = 60 * 1000;
constexpr Millis kDay = 24 * 60 * kMinute;

bool Defined(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

Result<Millis> Duration(const YamlDoc& doc, const YAML::Node& n, const char* field) {
  if (!n.IsScalar()) return Err(doc.ErrorAt(n, field, "expected a duration such as 30s, 2h, 7d"));
  auto d = rules::ParseDuration(n.Scalar());
  if (!d) return Err(doc.ErrorAt(n, field, d.error().message()));
  return *d;
}

Result<std::string> Text(const YamlDoc& doc, const YAML::Node& n, const char* field) {
  if (!n.IsScalar() || n.Scalar().empty()) return Err(doc.ErrorAt(n, field, "expected text"));
  return n.Scalar();
}

// "09:30" -> minutes after midnight.
std::optional<int> TimeOfDay(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  int h = 0, m = 0;
  if (std::from_chars(s.data(), s.data() + 2, h).ec != std::errc() ||
      std::from_chars(s.data() + 3, s.data() + 5, m).ec != std::errc() || h > 23 || m > 59)
    return std::nullopt;
  return h * 60 + m;
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    out.emplace_back(
        path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

// A YAML scalar as JSON: plain scalars that read as numbers, booleans or null become those;
// quoted ones stay strings.
json ScalarJson(const YAML::Node& n) {
  if (n.IsNull()) return nullptr;
  const std::string& s = n.Scalar();
  if (n.Tag() != "!") {
    if (s == "true" || s == "false") return s == "true";
    if (s == "null" || s == "~") return nullptr;
    double d = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) {
      int64_t i = 0;
      auto [iend, iec] = std::from_chars(s.data(), s.data() + s.size(), i);
      if (iec == std::errc() && iend == s.data() + s.size()) return i;
      return d;
    }
  }
  return s;
}

json NodeJson(const YAML::Node& n) {
  if (n.IsMap()) {
    json out = json::object();
    for (const auto& kv : n) out[kv.first.Scalar()] = NodeJson(kv.second);
    return out;
  }
  if (n.IsSequence()) {
    json out = json::array();
    for (const auto& item : n) out.push_back(NodeJson(item));
    return out;
  }
  return ScalarJson(n);
}

Result<std::vector<std::string>> StringList(const YamlDoc& doc, const YAML::Node& n,
                                            const char* field) {
  std::vector<std::string> out;
  if (!Defined(n)) return out;
  if (n.IsScalar()) return std::vector<std::string>{n.Scalar()};
  if (!n.IsSequence()) return Err(doc.ErrorAt(n, field, "expected a list"));
  for (const auto& item : n) {
    if (!item.IsScalar()) return Err(doc.ErrorAt(item, field, "expected text"));
    out.push_back(item.Scalar());
  }
  return out;
}

Status ParseTrigger(const YamlDoc& doc, const YAML::Node& n, Trigger& t) {
  if (!n.IsMap())
    return doc.ErrorAt(n, "trigger", "expected a mapping such as { event: Page Viewed }");
  NUDGE_TRY(core::YamlKnownKeys(doc, n,
                                {"event", "where", "segment_entered", "segment_exited",
                                 "stage_changed", "trait_changed", "date", "api"}));
  t.where_at = doc.Where(n);
  int kinds = 0;
  for (const char* k : {"event", "segment_entered", "segment_exited", "stage_changed",
                        "trait_changed", "date", "api"})
    kinds += Defined(n[k]) ? 1 : 0;
  if (kinds != 1)
    return doc.ErrorAt(n, "trigger",
                       "give exactly one of event, segment_entered, segment_exited, "
                       "stage_changed, trait_changed, date, api");
  if (Defined(n["where"]) && !Defined(n["event"]))
    return doc.ErrorAt(n["where"], "where", "a where filter belongs to an event trigger");
  if (Defined(n["event"])) {
    t.kind = TriggerKind::kEvent;
    NUDGE_ASSIGN_OR_RETURN(t.event, Text(doc, n["event"], "event"));
    if (Defined(n["where"])) {
      NUDGE_ASSIGN_OR_RETURN(
          t.where, rules::CompileYaml(doc, n["where"], "where", {.event_in_scope = true}));
    }
  } else if (Defined(n["segment_entered"]) || Defined(n["segment_exited"])) {
    const bool entered = Defined(n["segment_entered"]);
    t.kind = entered ? TriggerKind::kSegmentEntered : TriggerKind::kSegmentExited;
    const char* key = entered ? "segment_entered" : "segment_exited";
    NUDGE_ASSIGN_OR_RETURN(t.segment, Text(doc, n[key], key));
  } else if (Defined(n["stage_changed"])) {
    t.kind = TriggerKind::kStageChanged;
    NUDGE_ASSIGN_OR_RETURN(t.stage, Text(doc, n["stage_changed"], "stage_changed"));
    if (t.stage == "any") t.stage.clear();
  } else if (Defined(n["trait_changed"])) {
    t.kind = TriggerKind::kTraitChanged;
    NUDGE_ASSIGN_OR_RETURN(std::string path, Text(doc, n["trait_changed"], "trait_changed"));
    if (path.rfind("traits.", 0) == 0) path = path.substr(7);
    t.trait = SplitPath(path);
  } else if (Defined(n["date"])) {
    t.kind = TriggerKind::kDate;
    NUDGE_ASSIGN_OR_RETURN(std::string text, Text(doc, n["date"], "date"));
    auto parsed = ParseDateExpression(text);
    if (!parsed) return doc.ErrorAt(n["date"], "date", parsed.error().message());
    t.trait = parsed->first;
    t.offset = parsed->second;
  } else {
    t.kind = TriggerKind::kApi;
    if (!n["api"].IsScalar() || n["api"].Scalar() != "true")
      return doc.ErrorAt(n["api"], "api", "write api: true");
  }
  return Status::Ok();
}

Status ParseWait(const YamlDoc& doc, const YAML::Node& n, WaitSpec& w) {
  auto until = [&](const YAML::Node& u, const YAML::Node& days) -> Status {
    const std::string text = u.IsScalar() ? u.Scalar() : "";
    if (auto minute = TimeOfDay(text)) {
      w.kind = WaitSpec::Kind::kTimeOfDay;
      w.minute_of_day = *minute;
      if (Defined(days)) {
        static const std::vector<std::string> kDays = {"mon", "tue", "wed", "thu",
                                                       "fri", "sat", "sun"};
        NUDGE_ASSIGN_OR_RETURN(auto list, StringList(doc, days, "days"));
        w.weekdays = 0;
        for (auto d : list) {
          std::transform(d.begin(), d.end(), d.begin(), ::tolower);
          if (d == "weekdays") {
            w.weekdays |= 0x1F;
            continue;
          }
          if (d == "weekends") {
            w.weekdays |= 0x60;
            continue;
          }
          auto it = std::find(kDays.begin(), kDays.end(), d.substr(0, 3));
          if (it == kDays.end())
            return doc.ErrorAt(days, "days", "'" + d + "' is not a day (mon ... sun, weekdays)");
          w.weekdays |= static_cast<uint8_t>(1 << (it - kDays.begin()));
        }
      }
      return Status::Ok();
    }
    if (Defined(days))
      return doc.ErrorAt(days, "days", "days go with a time of day (until: \"09:00\")");
    auto parsed = ParseDateExpression(text);
    if (!parsed)
      return doc.ErrorAt(u, "until",
                         "expected a time of day (\"09:00\") or a date trait (\"1d before "
                         "traits.trial_ends_at\")");
    w.kind = WaitSpec::Kind::kDate;
    w.trait = parsed->first;
    w.offset = parsed->second;
    return Status::Ok();
  };
  if (n.IsScalar()) {
    if (TimeOfDay(n.Scalar())) return until(n, YAML::Node());
    NUDGE_ASSIGN_OR_RETURN(w.duration, Duration(doc, n, "wait"));
    w.kind = WaitSpec::Kind::kDuration;
    return Status::Ok();
  }
  if (!n.IsMap())
    return doc.ErrorAt(n, "wait", "expected a duration (30s) or { until: \"09:00\" }");
  NUDGE_TRY(core::YamlKnownKeys(doc, n, {"duration", "until", "days"}));
  if (Defined(n["duration"]) == Defined(n["until"]))
    return doc.ErrorAt(n, "wait", "give either duration or until");
  if (Defined(n["duration"])) {
    NUDGE_ASSIGN_OR_RETURN(w.duration, Duration(doc, n["duration"], "duration"));
    w.kind = WaitSpec::Kind::kDuration;
    return Status::Ok();
  }
  return until(n["until"], n["days"]);
}

Result<Step> ParseStep(const YamlDoc& doc, const YAML::Node& n) {
  Step s;
  s.at = doc.Where(n);
  if (!n.IsMap()) return Err(doc.ErrorAt(n, "steps", "each step is a mapping with an id"));
  NUDGE_TRY(
      core::YamlKnownKeys(doc, n,
                          {"id", "send", "wait", "wait_for", "branch", "split", "update", "webhook",
                           "exit", "next", "on_event", "on_timeout", "name", "description"}));
  if (!Defined(n["id"])) return Err(doc.ErrorAt(n, "id", "each step needs an id"));
  NUDGE_ASSIGN_OR_RETURN(s.id, Text(doc, n["id"], "id"));
  if (s.id == "end")
    return Err(doc.ErrorAt(n["id"], "id", "'end' is reserved (the end of the journey)"));
  static const std::vector<std::pair<const char*, StepKind>> kKinds = {
      {"send", StepKind::kSend},        {"wait", StepKind::kWait},
      {"wait_for", StepKind::kWaitFor}, {"branch", StepKind::kBranch},
      {"split", StepKind::kSplit},      {"update", StepKind::kUpdate},
      {"webhook", StepKind::kWebhook},  {"exit", StepKind::kExit}};
  int found = 0;
  const char* key = nullptr;
  for (const auto& [k, kind] : kKinds) {
    if (!Defined(n[k])) continue;
    ++found;
    key = k;
    s.kind = kind;
  }
  if (found != 1)
    return Err(doc.ErrorAt(n, s.id,
                           "a step does exactly one of send, wait, wait_for, branch, split, "
                           "update, webhook, exit"));
  const YAML::Node body = n[key];
  if (Defined(n["next"])) {
    NUDGE_ASSIGN_OR_RETURN(s.next, Text(doc, n["next"], "next"));
    s.next_at = doc.Where(n["next"]);
  }
  const bool has_on = Defined(n["on_event"]) || Defined(n["on_timeout"]);
  if (has_on && s.kind != StepKind::kWaitFor)
    return Err(doc.ErrorAt(n, s.id, "on_event and on_timeout belong to wait_for steps"));
  if ((s.kind == StepKind::kBranch || s.kind == StepKind::kSplit || s.kind == StepKind::kExit) &&
      Defined(n["next"]))
    return Err(doc.ErrorAt(n["next"], "next",
                           std::string("a ") + key + " step chooses its next step itself"));

  switch (s.kind) {
    case StepKind::kSend: {
      if (!body.IsMap())
        return Err(doc.ErrorAt(body, "send", "expected { channel: email, template: id }"));
      NUDGE_TRY(core::YamlKnownKeys(doc, body, {"channel", "template"}));
      NUDGE_ASSIGN_OR_RETURN(auto channel, core::YamlString(doc, body, "channel"));
      NUDGE_ASSIGN_OR_RETURN(auto tmpl, core::YamlString(doc, body, "template"));
      s.channel = channel.value_or("email");
      if (s.channel != "email" && s.channel != "sms" && s.channel != "push")
        return Err(doc.ErrorAt(body["channel"], "channel", "expected email, sms or push"));
      if (!tmpl) return Err(doc.ErrorAt(body, "template", "a send step names a template"));
      s.template_id = *tmpl;
      s.template_at = doc.Where(body["template"]);
      break;
    }
    case StepKind::kWait:
      NUDGE_TRY(ParseWait(doc, body, s.wait));
      break;
    case StepKind::kWaitFor: {
      if (!body.IsMap())
        return Err(
            doc.ErrorAt(body, "wait_for",
                        "expected { event: X, timeout: 2d } or { condition: ..., timeout: 2d }"));
      NUDGE_TRY(core::YamlKnownKeys(doc, body, {"event", "where", "condition", "timeout"}));
      if (Defined(body["event"]) == Defined(body["condition"]))
        return Err(doc.ErrorAt(body, "wait_for", "give either an event or a condition"));
      if (Defined(body["event"])) {
        NUDGE_ASSIGN_OR_RETURN(s.wait_event, Text(doc, body["event"], "event"));
        if (Defined(body["where"])) {
          NUDGE_ASSIGN_OR_RETURN(s.wait_where, rules::CompileYaml(doc, body["where"], "where",
                                                                  {.event_in_scope = true}));
        }
      } else {
        if (Defined(body["where"]))
          return Err(doc.ErrorAt(body["where"], "where", "where goes with event"));
        NUDGE_ASSIGN_OR_RETURN(s.wait_condition,
                               rules::CompileYaml(doc, body["condition"], "condition"));
      }
      if (!Defined(body["timeout"]))
        return Err(doc.ErrorAt(body, "timeout", "wait_for needs a timeout (how long to wait)"));
      NUDGE_ASSIGN_OR_RETURN(s.timeout, Duration(doc, body["timeout"], "timeout"));
      if (Defined(n["on_event"])) {
        NUDGE_ASSIGN_OR_RETURN(s.on_event, Text(doc, n["on_event"], "on_event"));
        s.on_event_at = doc.Where(n["on_event"]);
      }
      if (Defined(n["on_timeout"])) {
        NUDGE_ASSIGN_OR_RETURN(s.on_timeout, Text(doc, n["on_timeout"], "on_timeout"));
        s.on_timeout_at = doc.Where(n["on_timeout"]);
      }
      break;
    }
    case StepKind::kBranch: {
      if (!body.IsSequence() || body.size() == 0)
        return Err(doc.ErrorAt(body, "branch",
                               "expected a list of { when: ..., next: ... } and { else: ... }"));
      for (const YAML::Node& c : body) {
        NUDGE_TRY(core::YamlKnownKeys(doc, c, {"when", "next", "else"}));
        if (Defined(c["else"])) {
          if (Defined(c["when"]) || Defined(c["next"]))
            return Err(doc.ErrorAt(c, "else", "else stands alone: - else: step-id"));
          if (!s.else_next.empty()) return Err(doc.ErrorAt(c, "else", "only one else"));
          NUDGE_ASSIGN_OR_RETURN(s.else_next, Text(doc, c["else"], "else"));
          s.else_at = doc.Where(c["else"]);
          continue;
        }
        if (!s.else_next.empty()) return Err(doc.ErrorAt(c, "else", "else comes last"));
        BranchCase bc;
        if (!Defined(c["when"]) || !Defined(c["next"]))
          return Err(doc.ErrorAt(c, "branch", "each case has when: and next:"));
        NUDGE_ASSIGN_OR_RETURN(
            bc.when, rules::CompileYaml(doc, c["when"], "when", {.event_in_scope = true}));
        bc.when_text = c["when"].Scalar();
        NUDGE_ASSIGN_OR_RETURN(bc.next, Text(doc, c["next"], "next"));
        bc.at = doc.Where(c["next"]);
        s.cases.push_back(std::move(bc));
      }
      if (s.else_next.empty()) s.else_next = "end";
      break;
    }
    case StepKind::kSplit: {
      YAML::Node variants = body;
      if (body.IsMap()) {
        NUDGE_TRY(core::YamlKnownKeys(doc, body, {"experiment", "variants"}));
        NUDGE_ASSIGN_OR_RETURN(s.experiment, Text(doc, body["experiment"], "experiment"));
        variants = body["variants"];
      }
      if (!variants.IsSequence() || variants.size() < 2)
        return Err(doc.ErrorAt(variants.IsDefined() ? variants : body, "split",
                               "expected at least two { weight: 50, next: step } entries"));
      double total = 0;
      std::set<std::string> names;
      for (const YAML::Node& v : variants) {
        NUDGE_TRY(core::YamlKnownKeys(doc, v, {"name", "weight", "next"}));
        Variant var;
        var.at = doc.Where(v);
        NUDGE_ASSIGN_OR_RETURN(auto weight, core::YamlNumber(doc, v, "weight"));
        if (!weight || *weight <= 0)
          return Err(doc.ErrorAt(v, "weight", "a positive weight is needed"));
        var.weight = *weight;
        total += var.weight;
        if (!Defined(v["next"]))
          return Err(doc.ErrorAt(v, "next", "each variant names its next step"));
        NUDGE_ASSIGN_OR_RETURN(var.next, Text(doc, v["next"], "next"));
        if (Defined(v["name"])) {
          NUDGE_ASSIGN_OR_RETURN(var.name, Text(doc, v["name"], "name"));
        } else if (!s.experiment.empty()) {
          return Err(doc.ErrorAt(v, "name", "an experiment's variants have names"));
        } else {
          var.name = var.next;
        }
        if (!names.insert(var.name).second)
          return Err(doc.ErrorAt(v, "name", "'" + var.name + "' is used twice"));
        s.variants.push_back(std::move(var));
      }
      (void)total;
      break;
    }
    case StepKind::kUpdate: {
      if (!body.IsMap())
        return Err(doc.ErrorAt(body, "update",
                               "expected { set: {...}, unset: [...], tags: {...}, score: 5 }"));
      NUDGE_TRY(core::YamlKnownKeys(doc, body, {"set", "unset", "tags", "score"}));
      if (Defined(body["set"])) {
        if (!body["set"].IsMap())
          return Err(doc.ErrorAt(body["set"], "set", "expected traits: { plan: pro }"));
        s.set_json = NodeJson(body["set"]).dump();
      }
      NUDGE_ASSIGN_OR_RETURN(s.unset, StringList(doc, body["unset"], "unset"));
      if (Defined(body["tags"])) {
        const YAML::Node tags = body["tags"];
        NUDGE_TRY(core::YamlKnownKeys(doc, tags, {"add", "remove"}));
        NUDGE_ASSIGN_OR_RETURN(s.add_tags, StringList(doc, tags["add"], "add"));
        NUDGE_ASSIGN_OR_RETURN(s.remove_tags, StringList(doc, tags["remove"], "remove"));
      }
      NUDGE_ASSIGN_OR_RETURN(auto score, core::YamlNumber(doc, body, "score"));
      s.score = score.value_or(0);
      break;
    }
    case StepKind::kWebhook: {
      if (!body.IsMap())
        return Err(doc.ErrorAt(body, "webhook", "expected { url: ..., body: ... }"));
      NUDGE_TRY(core::YamlKnownKeys(doc, body, {"url", "method", "body", "headers"}));
      NUDGE_ASSIGN_OR_RETURN(auto url, core::YamlString(doc, body, "url"));
      if (!url || url->empty()) return Err(doc.ErrorAt(body, "url", "a webhook needs a url"));
      s.url = *url;
      if (s.url.find("{{") == std::string::npos && s.url.rfind("http://", 0) != 0 &&
          s.url.rfind("https://", 0) != 0)
        return Err(doc.ErrorAt(body["url"], "url", "expected an http:// or https:// URL"));
      NUDGE_ASSIGN_OR_RETURN(auto method, core::YamlString(doc, body, "method"));
      s.method = method.value_or("POST");
      if (s.method != "POST" && s.method != "PUT" && s.method != "PATCH" && s.method != "GET")
        return Err(doc.ErrorAt(body["method"], "method", "expected POST, PUT, PATCH or GET"));
      if (Defined(body["body"])) {
        s.body = body["body"].IsScalar() ? body["body"].Scalar() : NodeJson(body["body"]).dump();
      }
      if (Defined(body["headers"])) {
        if (!body["headers"].IsMap())
          return Err(doc.ErrorAt(body["headers"], "headers", "expected a mapping"));
        for (const auto& kv : body["headers"]) {
          if (!IsHttpHeaderName(kv.first.Scalar()))
            return Err(doc.ErrorAt(kv.first, "headers",
                                   "a header name has letters, digits and !#$%&'*+-.^_`|~ only "
                                   "(no spaces, colons or line breaks)"));
          if (IsReservedWebhookHeader(kv.first.Scalar()))
            return Err(doc.ErrorAt(kv.first, "headers",
                                   "'" + kv.first.Scalar() +
                                       "' is set by nudge (Host, Content-Length, "
                                       "Transfer-Encoding, Connection and X-Nudge-* are)"));
          s.headers.emplace_back(kv.first.Scalar(), kv.second.Scalar());
        }
      }
      // The Liquid of url, body and header values is compiled now, as a template's is when it
      // is saved, so that a syntax error is refused here and not at every delivery.
      content::CompileOptions co;
      co.filters = content::NudgeFilters();
      auto check = [&](const YAML::Node& node, const std::string& text,
                       const char* field) -> Status {
        auto t = content::Template::Compile(text, co);
        if (t) return Status::Ok();
        return Status::Invalid(
            std::string(field) + ": " + t.error().message(),
            node.IsScalar() ? doc.WhereInside(node, t.error().where()) : doc.Where(node));
      };
      NUDGE_TRY(check(body["url"], s.url, "url"));
      if (Defined(body["body"])) NUDGE_TRY(check(body["body"], s.body, "body"));
      if (Defined(body["headers"]))
        for (const auto& kv : body["headers"])
          NUDGE_TRY(check(kv.second, kv.second.Scalar(), "headers"));
      break;
    }
    case StepKind::kExit:
      break;
  }
  return s;
}

}  // namespace

std::string_view StepKindName(StepKind kind) {
  switch (kind) {
    case StepKind::kSend:
      return "send";
    case StepKind::kWait:
      return "wait";
    case StepKind::kWaitFor:
      return "wait_for";
    case StepKind::kBranch:
      return "branch";
    case StepKind::kSplit:
      return "split";
    case StepKind::kUpdate:
      return "update";
    case StepKind::kWebhook:
      return "webhook";
    case StepKind::kExit:
      return "exit";
  }
  return "exit";
}

bool IsReservedWebhookHeader(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
         lower == "connection" || lower.starts_with("x-nudge-");
}

bool IsHttpHeaderName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool token = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!token) return false;
  }
  return true;
}

Result<std::pair<std::vector<std::string>, Millis>> ParseDateExpression(std::string_view text) {
  // "[<duration> before|after] traits.<path>"
  Millis offset = 0;
  std::string_view rest = text;
  const auto space = rest.find(' ');
  if (space != std::string_view::npos) {
    auto d = rules::ParseDuration(rest.substr(0, space));
    if (!d) return Err(Status::Invalid("expected \"3d before traits.x\" or \"traits.x\""));
    rest.remove_prefix(space + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.rfind("before ", 0) == 0) {
      offset = -*d;
      rest.remove_prefix(7);
    } else if (rest.rfind("after ", 0) == 0) {
      offset = *d;
      rest.remove_prefix(6);
    } else {
      return Err(Status::Invalid("expected 'before' or 'after' after the duration"));
    }
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  }
  if (rest.rfind("traits.", 0) != 0 || rest.size() == 7)
    return Err(Status::Invalid("a date comes from a trait: traits.trial_ends_at"));
  return std::make_pair(SplitPath(rest.substr(7)), offset);
}

std::optional<size_t> Journey::Resolve(size_t from, const std::string& target) const {
  if (target == "end") return std::nullopt;
  if (target.empty())
    return from + 1 < steps.size() ? std::optional<size_t>(from + 1) : std::nullopt;
  auto it = index.find(target);
  if (it == index.end()) return std::nullopt;
  return it->second;
}

std::vector<std::shared_ptr<const rules::Condition>> Journey::Conditions() const {
  std::vector<std::shared_ptr<const rules::Condition>> out;
  auto add = [&](const std::shared_ptr<const rules::Condition>& c) {
    if (c) out.push_back(c);
  };
  add(trigger.where);
  add(audience);
  add(exit_when);
  for (const auto& s : steps) {
    add(s.wait_where);
    add(s.wait_condition);
    for (const auto& c : s.cases) add(c.when);
  }
  return out;
}

std::vector<std::string> Journey::Segments() const {
  std::set<std::string> out;
  if (!trigger.segment.empty()) out.insert(trigger.segment);
  if (!test_group.empty()) out.insert(test_group);
  for (const auto& c : Conditions())
    for (const auto& s : c->segments()) out.insert(s);
  return {out.begin(), out.end()};
}

std::vector<std::string> Journey::Topics() const {
  std::set<std::string> out;
  for (const auto& c : Conditions())
    for (const auto& t : c->topics()) out.insert(t);
  return {out.begin(), out.end()};
}

std::vector<std::string> Journey::Templates() const {
  std::set<std::string> out;
  for (const auto& s : steps)
    if (s.kind == StepKind::kSend) out.insert(s.template_id);
  return {out.begin(), out.end()};
}

Result<Journey> ParseJourney(std::string_view text, std::string_view source,
                             std::optional<std::string_view> id) {
  NUDGE_ASSIGN_OR_RETURN(YamlDoc doc, core::LoadYaml(text, source));
  const YAML::Node& root = doc.root;
  NUDGE_TRY(
      core::YamlKnownKeys(doc, root,
                          {"id", "name", "goal", "description", "trigger", "entry", "max_active",
                           "audience", "test_group", "exit_when", "max_lateness", "steps"}));
  Journey j;
  NUDGE_ASSIGN_OR_RETURN(auto doc_id, core::YamlString(doc, root, "id"));
  if (doc_id && id && *doc_id != *id)
    return Err(
        doc.ErrorAt(root["id"], "id", "'" + *doc_id + "' differs from '" + std::string(*id) + "'"));
  if (!doc_id && !id) return Err(Status::Invalid("id: is required", std::string(source)));
  j.id = doc_id ? *doc_id : std::string(*id);
  for (size_t i = 0; i < j.id.size(); ++i) {
    const char c = j.id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '-' || c == '_'))) ||
        j.id.size() > 64)
      return Err(Status::Invalid(
          "id: '" + j.id + "' is not an id: use lowercase letters, digits, '-' and '_'",
          doc_id ? doc.Where(root["id"]) : std::string(source)));
  }
  NUDGE_ASSIGN_OR_RETURN(auto name, core::YamlString(doc, root, "name"));
  j.name = name.value_or(j.id);
  NUDGE_ASSIGN_OR_RETURN(auto goal, core::YamlString(doc, root, "goal"));
  j.goal = goal.value_or("");
  NUDGE_ASSIGN_OR_RETURN(auto description, core::YamlString(doc, root, "description"));
  j.description = description.value_or("");

  if (!Defined(root["trigger"]))
    return Err(Status::Invalid("trigger: is required", doc.Where(root)));
  NUDGE_TRY(ParseTrigger(doc, root["trigger"], j.trigger));

  if (Defined(root["entry"])) {
    NUDGE_ASSIGN_OR_RETURN(std::string entry, Text(doc, root["entry"], "entry"));
    if (entry == "once") {
      j.entry = EntryRule::kOnce;
    } else if (entry == "every_time") {
      j.entry = EntryRule::kEveryTime;
    } else if (entry.rfind("once_per ", 0) == 0) {
      auto d = rules::ParseDuration(entry.substr(9));
      if (!d || *d <= 0)
        return Err(
            doc.ErrorAt(root["entry"], "entry", "expected once_per <duration>, e.g. once_per 30d"));
      j.entry = EntryRule::kOncePer;
      j.entry_period = *d;
    } else {
      return Err(doc.ErrorAt(root["entry"], "entry", "expected once, once_per 30d or every_time"));
    }
  }
  NUDGE_ASSIGN_OR_RETURN(auto max_active,
                         core::YamlInt(doc, root, "max_active", "", 1, Journey::kMaxMaxActive));
  if (max_active) {
    if (j.entry != EntryRule::kEveryTime)
      return Err(doc.ErrorAt(root["max_active"], "max_active",
                             "only entry: every_time lets a contact run a journey more than once "
                             "at a time"));
    j.max_active = *max_active;
  }
  if (Defined(root["audience"])) {
    NUDGE_ASSIGN_OR_RETURN(j.audience, rules::CompileYaml(doc, root["audience"], "audience",
                                                          {.event_in_scope = true}));
  }
  if (Defined(root["test_group"])) {
    NUDGE_ASSIGN_OR_RETURN(j.test_group, Text(doc, root["test_group"], "test_group"));
  }
  if (Defined(root["exit_when"])) {
    NUDGE_ASSIGN_OR_RETURN(j.exit_when, rules::CompileYaml(doc, root["exit_when"], "exit_when",
                                                           {.event_in_scope = true}));
  }
  if (Defined(root["max_lateness"])) {
    NUDGE_ASSIGN_OR_RETURN(j.max_lateness, Duration(doc, root["max_lateness"], "max_lateness"));
  }
  const YAML::Node steps = root["steps"];
  if (!Defined(steps) || !steps.IsSequence() || steps.size() == 0)
    return Err(Status::Invalid("steps: expected a list of steps", doc.Where(root)));
  if (steps.size() > kMaxSteps)
    return Err(Status::Invalid("steps: a journey has at most " + std::to_string(kMaxSteps) +
                                   " steps, this one " + std::to_string(steps.size()),
                               doc.Where(steps)));
  for (const YAML::Node& n : steps) {
    NUDGE_ASSIGN_OR_RETURN(Step s, ParseStep(doc, n));
    if (j.index.count(s.id))
      return Err(Status::Invalid("id: step '" + s.id + "' is defined twice", s.at));
    j.index[s.id] = j.steps.size();
    j.steps.push_back(std::move(s));
  }
  return j;
}

std::vector<Status> CheckJourney(const Journey& j, const CheckOptions& options) {
  std::vector<Status> problems;
  auto target_ok = [&](const std::string& target, const Where& at, const std::string& field) {
    if (target.empty() || target == "end" || j.index.count(target)) return;
    problems.push_back(Status::Invalid(field + ": no step '" + target + "' in this journey", at));
  };
  // Successors of each step (targets that resolve), and whether the step takes time.
  std::vector<std::vector<size_t>> next(j.steps.size());
  for (size_t i = 0; i < j.steps.size(); ++i) {
    const Step& s = j.steps[i];
    auto link = [&](const std::string& target) {
      if (auto t = j.Resolve(i, target)) next[i].push_back(*t);
    };
    switch (s.kind) {
      case StepKind::kBranch:
        for (const auto& c : s.cases) {
          target_ok(c.next, c.at, "next");
          link(c.next);
        }
        target_ok(s.else_next, s.else_at, "else");
        link(s.else_next);
        break;
      case StepKind::kSplit:
        for (const auto& v : s.variants) {
          target_ok(v.next, v.at, "next");
          link(v.next);
        }
        break;
      case StepKind::kWaitFor:
        target_ok(s.on_event, s.on_event_at, "on_event");
        target_ok(s.on_timeout, s.on_timeout_at, "on_timeout");
        link(s.on_event.empty() ? s.next : s.on_event);
        link(s.on_timeout.empty() ? s.next : s.on_timeout);
        target_ok(s.next, s.next_at, "next");
        break;
      case StepKind::kExit:
        break;
      default:
        target_ok(s.next, s.next_at, "next");
        link(s.next);
    }
    if (s.kind == StepKind::kSend && options.template_exists &&
        !options.template_exists(s.template_id))
      problems.push_back(Status::Invalid(
          "template: no template '" + s.template_id + "' (templates/" + s.template_id + ".yaml)",
          s.template_at.empty() ? s.at : s.template_at));
  }
  // Reachability from the first step.
  std::vector<bool> seen(j.steps.size(), false);
  std::vector<size_t> stack{0};
  while (!stack.empty()) {
    const size_t i = stack.back();
    stack.pop_back();
    if (seen[i]) continue;
    seen[i] = true;
    for (size_t t : next[i]) stack.push_back(t);
  }
  for (size_t i = 0; i < j.steps.size(); ++i)
    if (!seen[i])
      problems.push_back(
          Status::Invalid("step '" + j.steps[i].id + "' can never be reached", j.steps[i].at));
  // A loop through steps that take no time would spin forever: every cycle needs a wait.
  auto takes_time = [&](size_t i) {
    return j.steps[i].kind == StepKind::kWait || j.steps[i].kind == StepKind::kWaitFor;
  };
  std::vector<int> color(j.steps.size(), 0);  // 0 new, 1 on the path, 2 done
  std::vector<size_t> path;
  std::set<std::string> reported;
  std::function<void(size_t)> visit = [&](size_t i) {
    color[i] = 1;
    path.push_back(i);
    for (size_t t : next[i]) {
      if (takes_time(t)) continue;
      if (color[t] == 1) {
        std::string loop;
        for (auto it = std::find(path.begin(), path.end(), t); it != path.end(); ++it)
          loop += j.steps[*it].id + " -> ";
        loop += j.steps[t].id;
        if (reported.insert(j.steps[t].id).second)
          problems.push_back(
              Status::Invalid("the loop " + loop + " never waits: add a wait step", j.steps[t].at));
      } else if (color[t] == 0) {
        visit(t);
      }
    }
    path.pop_back();
    color[i] = 2;
  };
  for (size_t i = 0; i < j.steps.size(); ++i)
    if (color[i] == 0 && !takes_time(i)) visit(i);
  if (options.segment_exists) {
    for (const auto& seg : j.Segments())
      if (!options.segment_exists(seg))
        problems.push_back(Status::Invalid("no segment '" + seg + "'", j.trigger.where_at));
  }
  return problems;
}

}  // namespace nudge::journey
