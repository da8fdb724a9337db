#include "app/offline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli/workspace_files.h"
#include "content/image/image.h"
#include "content/template.h"
#include "core/files.h"
#include "core/time.h"
#include "journey/definition.h"
#include "journey/policies.h"
#include "journey/sandbox.h"
#include "rules/condition.h"
#include "segment/definitions.h"

namespace nudge::app {
namespace {

namespace fs = std::filesystem;
using core::ReadFile;
using core::YamlFiles;
using nlohmann::json;

std::string Clock(core::Millis ms) { return core::FormatIso8601(ms).substr(0, 19) + "Z"; }

}  // namespace

int RunValidate(const std::string& dir_text) {
  const fs::path dir(dir_text);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "nudge: %s is not a directory\n", dir_text.c_str());
    return 2;
  }
  std::vector<Status> problems;
  int files = 0;
  auto read = [&](const fs::path& f, const std::string& label) -> std::optional<std::string> {
    ++files;
    auto text = ReadFile(f);
    if (!text) problems.push_back(Status::Invalid("cannot read the file", label));
    return text;
  };

  // Segments, then the references between them.
  std::map<std::string, segment::SegmentDef> segments;
  for (const auto& f : YamlFiles(dir / "segments")) {
    const std::string label = "segments/" + f.filename().string();
    auto text = read(f, label);
    if (!text) continue;
    auto def = segment::ParseSegment(*text, label, f.stem().string());
    if (!def) {
      problems.push_back(def.error());
      continue;
    }
    segments.emplace(def->id, std::move(*def));
  }
  const auto find = [&](const std::string& id) -> const segment::SegmentDef* {
    auto it = segments.find(id);
    return it == segments.end() ? nullptr : &it->second;
  };
  for (const auto& [id, def] : segments)
    for (const auto& p : segment::SegmentReferenceProblems(def, find))
      problems.push_back(Status::Invalid("condition: " + p, def.condition_at));
  // The topics policies.yaml lists (none without it): every topic named elsewhere must be one.
  journey::Policies policies;
  for (const char* name : {"scoring", "stages", "policies"}) {
    for (const char* ext : {".yaml", ".yml"}) {
      const fs::path f = dir / (std::string(name) + ext);
      if (!fs::exists(f)) continue;
      const std::string label = f.filename().string();
      auto text = read(f, label);
      if (!text) continue;
      Status s;
      if (std::string(name) == "scoring") {
        auto r = segment::ParseScoring(*text, label);
        if (!r) s = r.error();
      } else if (std::string(name) == "stages") {
        auto r = segment::ParseStages(*text, label);
        if (!r) s = r.error();
      } else {
        auto r = journey::ParsePolicies(*text, label);
        if (r) {
          policies = std::move(*r);
        } else {
          s = r.error();
        }
      }
      if (!s.ok()) problems.push_back(s);
    }
  }
  auto unknown_topic = [&](const std::string& topic, const std::string& where) {
    if (auto why = journey::UnknownTopic(policies, topic))
      problems.push_back(Status::Invalid(*why, where));
  };
  for (const auto& [id, def] : segments)
    for (const auto& t : def.condition->topics()) unknown_topic(t, def.condition_at);
  std::set<std::string> templates;
  std::vector<cli::TemplateDocument> template_docs;
  for (const auto& f : YamlFiles(dir / "templates")) {
    ++files;
    auto doc = cli::ReadTemplateDocument(f, "templates/" + f.filename().string());
    if (!doc) {
      problems.push_back(doc.error());
      templates.insert(f.stem().string());
      continue;
    }
    templates.insert(doc->id);
    template_docs.push_back(std::move(*doc));
  }
  for (const auto& doc : template_docs) {
    content::TemplateEnv env;
    env.partial_exists = [&](std::string_view p) { return templates.count(std::string(p)) > 0; };
    auto t = content::ParseTemplate(doc.text, doc.label, std::nullopt, env);
    if (t) {
      if (!(*t)->topic.empty()) unknown_topic((*t)->topic, doc.label + " topic");
      continue;
    }
    const std::string message = doc.MapError(t.error());
    problems.push_back(Status::Invalid(message));
  }
  for (const auto& f : YamlFiles(dir / "images")) {
    ++files;
    content::CompileOptions co;
    co.filters = content::NudgeFilters();
    auto check = [&](size_t, std::string_view source) -> Status {
      auto t = content::Template::Compile(source, co);
      return t ? Status::Ok() : t.error();
    };
    auto img = content::LoadImageTemplateFile(f, check);
    if (!img) {
      problems.push_back(img.error());
      continue;
    }
    // What apply will send: the assets as plain file names beside the YAML.
    if (auto doc = cli::ReadImageDocument(f, "images/" + f.filename().string()); !doc)
      problems.push_back(doc.error());
  }
  for (const auto& f : YamlFiles(dir / "journeys")) {
    const std::string label = "journeys/" + f.filename().string();
    auto text = read(f, label);
    if (!text) continue;
    auto j = journey::ParseJourney(*text, label, f.stem().string());
    if (!j) {
      problems.push_back(j.error());
      continue;
    }
    journey::CheckOptions check;
    check.template_exists = [&](const std::string& t) { return templates.count(t) > 0; };
    check.segment_exists = [&](const std::string& s) { return segments.count(s) > 0; };
    for (auto& p : journey::CheckJourney(*j, check)) problems.push_back(std::move(p));
    for (const auto& t : j->Topics()) unknown_topic(t, label);
  }
  for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.ToString().c_str());
  if (files == 0) {
    std::fprintf(stderr,
                 "nudge: nothing to validate in %s (segments/, journeys/, templates/, "
                 "scoring.yaml, stages.yaml, policies.yaml)\n",
                 dir_text.c_str());
    return 2;
  }
  std::printf("%d file(s) checked, %zu problem(s)\n", files, problems.size());
  return problems.empty() ? 0 : 1;
}

namespace {

struct Line {
  core::Millis at;
  int number;
  std::string json;
};

// Reads JSON Lines; every line must be an object with a timestamp (events) or may lack one
// (contacts). Errors say file:line.
Result<std::vector<Line>> ReadLines(const std::string& file, bool need_time) {
  std::ifstream in(file);
  if (!in) return Err(Status::Invalid("cannot read the file", file));
  std::vector<Line> out;
  std::string text;
  int number = 0;
  while (std::getline(in, text)) {
    ++number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(text, nullptr, false);
    const std::string where = file + ":" + std::to_string(number);
    if (j.is_discarded() || !j.is_object()) return Err(Status::Invalid("not a JSON object", where));
    if (!j.contains("type")) j["type"] = j.contains("event") ? "track" : "identify";
    core::Millis at = 0;
    for (const char* key : {"timestamp", "originalTimestamp", "receivedAt"}) {
      if (j.contains(key) && j[key].is_string()) {
        auto t = core::ParseIso8601(j[key].get<std::string>());
        if (!t) return Err(Status::Invalid(std::string(key) + ": " + t.error().message(), where));
        at = *t;
        break;
      }
    }
    if (need_time && at == 0)
      return Err(Status::Invalid("an event needs a timestamp to be replayed in time", where));
    out.push_back({at, number, j.dump()});
  }
  return out;
}

}  // namespace

int RunSimulate(const SimulateFlags& f) {
  spdlog::set_level(spdlog::level::warn);
  auto events = ReadLines(f.events, true);
  if (!events) {
    std::fprintf(stderr, "nudge: %s\n", events.error().ToString().c_str());
    return 2;
  }
  std::vector<Line> contacts;
  if (f.contacts) {
    auto c = ReadLines(*f.contacts, false);
    if (!c) {
      std::fprintf(stderr, "nudge: %s\n", c.error().ToString().c_str());
      return 2;
    }
    contacts = std::move(*c);
  }
  auto after = rules::ParseDuration(f.after);
  if (!after) {
    std::fprintf(stderr, "nudge: --after: %s\n", after.error().message().c_str());
    return 2;
  }
  std::stable_sort(events->begin(), events->end(),
                   [](const Line& a, const Line& b) { return a.at < b.at; });
  const core::Millis start = events->empty() ? core::SystemClock().NowMillis() : events->front().at;
  auto box = journey::Sandbox::Create(start);
  if (!box) {
    std::fprintf(stderr, "nudge: %s\n", box.error().ToString().c_str());
    return 1;
  }
  journey::Sandbox& sb = **box;
  if (Status s = sb.ApplyDirectory(f.dir); !s.ok()) {
    std::fprintf(stderr, "nudge: %s\n", s.ToString().c_str());
    return 1;
  }
  for (const auto& c : contacts) {
    if (Status s = sb.Send(c.json); !s.ok()) {
      std::fprintf(stderr, "nudge: %s:%d: %s\n", f.contacts->c_str(), c.number,
                   s.ToString().c_str());
      return 1;
    }
  }
  for (const auto& e : *events) {
    Status s = sb.AdvanceTo(e.at);
    if (s.ok()) s = sb.Send(e.json);
    if (!s.ok()) {
      std::fprintf(stderr, "nudge: %s:%d: %s\n", f.events.c_str(), e.number, s.ToString().c_str());
      return 1;
    }
  }
  const core::Millis end = (events->empty() ? start : events->back().at) + *after;
  if (Status s = sb.AdvanceTo(end); !s.ok()) {
    std::fprintf(stderr, "nudge: %s\n", s.ToString().c_str());
    return 1;
  }

  auto messages = sb.Messages();
  if (!messages) {
    std::fprintf(stderr, "nudge: %s\n", messages.error().ToString().c_str());
    return 1;
  }
  json report{{"from", core::FormatIso8601(start)},
              {"until", core::FormatIso8601(end)},
              {"events", events->size()},
              {"journeys", json::array()}};
  for (const auto& info : sb.journeys().ListJourneys(sb.workspace())) {
    auto instances = sb.Instances(info.id);
    if (!instances) continue;
    json j{{"id", info.id}, {"name", info.definition->name}, {"goal", info.definition->goal}};
    std::map<std::string, int> by_status;
    json list = json::array();
    for (const auto& inst : *instances) {
      auto path = sb.Path(inst.id);
      json steps = json::array();
      if (path)
        for (const auto& [step, outcome, at] : *path)
          if (outcome == "entered") steps.push_back(step);
      ++by_status[inst.status];
      json msgs = json::array();
      for (const auto& m : *messages)
        if (m.instance == inst.id)
          msgs.push_back(json{{"at", core::FormatIso8601(m.created_at)},
                              {"step", m.step},
                              {"channel", m.channel},
                              {"template", m.template_id},
                              {"status", m.status},
                              {"send_at", core::FormatIso8601(m.send_at)},
                              // Written inside the contact's quiet hours: it goes at send_at.
                              {"held_for_quiet_hours", m.send_at > m.created_at}});
      json data = json::parse(inst.data, nullptr, false);
      list.push_back(
          json{{"contact", sb.LabelOf(inst.contact)},
               {"entered_at", core::FormatIso8601(inst.entered_at)},
               {"status", inst.status},
               {"path", steps},
               {"variants",
                data.is_object() && data.contains("variants") ? data["variants"] : json::object()},
               {"messages", std::move(msgs)}});
    }
    int sent = 0, capped = 0;
    for (const auto& m : *messages) {
      if (m.journey != info.id) continue;
      if (m.status == "queued" || m.status == "deferred_quiet_hours") ++sent;
      if (m.status == "capped") ++capped;
    }
    j["entered"] = instances->size();
    j["converted"] = by_status["converted"];
    j["completed"] = by_status["completed"];
    j["exited"] = by_status["exited"];
    j["active"] = by_status["active"];
    j["messages"] = sent;
    j["capped"] = capped;
    j["instances"] = std::move(list);
    report["journeys"].push_back(std::move(j));
  }
  if (f.json) {
    std::printf("%s\n", report.dump(2).c_str());
    return 0;
  }
  std::printf("Simulated %zu events from %s to %s (times in UTC; nothing was sent).\n\n",
              events->size(), Clock(start).c_str(), Clock(end).c_str());
  for (const auto& j : report["journeys"]) {
    std::printf("Journey %s (%s)\n", j["id"].get<std::string>().c_str(),
                j["name"].get<std::string>().c_str());
    if (!j["goal"].get<std::string>().empty())
      std::printf("  goal: %s\n", j["goal"].get<std::string>().c_str());
    for (const auto& i : j["instances"]) {
      std::string path;
      for (const auto& s : i["path"]) path += (path.empty() ? "" : " > ") + s.get<std::string>();
      std::printf("  %-16s entered %s  %-10s %s\n", i["contact"].get<std::string>().c_str(),
                  i["entered_at"].get<std::string>().substr(0, 19).c_str(),
                  i["status"].get<std::string>().c_str(), path.c_str());
      // When each message would go out; one written inside quiet hours says so.
      for (const auto& m : i["messages"]) {
        const std::string held =
            m["held_for_quiet_hours"].get<bool>()
                ? "  held for quiet hours from " + m["at"].get<std::string>().substr(0, 19)
                : "";
        std::printf("      %s  %-7s %-24s %s%s\n",
                    m["send_at"].get<std::string>().substr(0, 19).c_str(),
                    m["channel"].get<std::string>().c_str(),
                    (m["template"].get<std::string>().empty() ? m["step"] : m["template"])
                        .get<std::string>()
                        .c_str(),
                    m["status"].get<std::string>().c_str(), held.c_str());
      }
    }
    std::printf("\n");
  }
  std::printf("%-28s %8s %10s %10s %7s %7s %9s %7s\n", "journey", "entered", "converted",
              "completed", "exited", "active", "messages", "capped");
  for (const auto& j : report["journeys"])
    std::printf("%-28s %8d %10d %10d %7d %7d %9d %7d\n", j["id"].get<std::string>().c_str(),
                j["entered"].get<int>(), j["converted"].get<int>(), j["completed"].get<int>(),
                j["exited"].get<int>(), j["active"].get<int>(), j["messages"].get<int>(),
                j["capped"].get<int>());
  return 0;
}

namespace {

std::string Escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string DurationText(core::Millis ms) {
  if (ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  return std::to_string(ms / 1000) + "s";
}

std::string Dot(const journey::Journey& j) {
  using journey::StepKind;
  std::ostringstream o;
  o << "digraph \"" << Escape(j.id) << "\" {\n"
    << "  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
    << "  edge [fontname=\"Helvetica\", fontsize=10];\n";
  std::string trigger;
  switch (j.trigger.kind) {
    case journey::TriggerKind::kEvent:
      trigger = "event: " + j.trigger.event;
      break;
    case journey::TriggerKind::kSegmentEntered:
      trigger = "entered segment " + j.trigger.segment;
      break;
    case journey::TriggerKind::kSegmentExited:
      trigger = "left segment " + j.trigger.segment;
      break;
    case journey::TriggerKind::kStageChanged:
      trigger = "stage: " + (j.trigger.stage.empty() ? "any" : j.trigger.stage);
      break;
    case journey::TriggerKind::kTraitChanged:
      trigger = "trait changed";
      break;
    case journey::TriggerKind::kDate:
      trigger = "date reached";
      break;
    case journey::TriggerKind::kApi:
      trigger = "API";
      break;
  }
  o << "  start [shape=oval, label=\"" << Escape(j.name + "\n" + trigger) << "\"];\n";
  o << "  end [shape=doublecircle, label=\"end\"];\n";
  if (j.exit_when)
    o << "  goal [shape=note, label=\"goal: exits when\\n"
      << Escape(j.exit_when->text()) << "\"];\n";
  auto node = [&](size_t i) { return "\"" + Escape(j.steps[i].id) + "\""; };
  auto target = [&](size_t from, const std::string& t) {
    auto r = j.Resolve(from, t);
    return r ? node(*r) : std::string("end");
  };
  for (size_t i = 0; i < j.steps.size(); ++i) {
    const auto& s = j.steps[i];
    std::string label = s.id + "\n";
    switch (s.kind) {
      case StepKind::kSend:
        label += "send " + s.channel + ": " + s.template_id;
        break;
      case StepKind::kWait:
        label += s.wait.kind == journey::WaitSpec::Kind::kDuration
                     ? "wait " + DurationText(s.wait.duration)
                 : s.wait.kind == journey::WaitSpec::Kind::kTimeOfDay
                     ? "wait until " + std::to_string(s.wait.minute_of_day / 60) + ":" +
                           (s.wait.minute_of_day % 60 < 10 ? "0" : "") +
                           std::to_string(s.wait.minute_of_day % 60)
                     : "wait until a date";
        break;
      case StepKind::kWaitFor:
        label += "wait for " + (s.wait_event.empty() ? s.wait_condition->text() : s.wait_event) +
                 "\n(up to " + DurationText(s.timeout) + ")";
        break;
      case StepKind::kBranch:
        label += "branch";
        break;
      case StepKind::kSplit:
        label += s.experiment.empty() ? "split" : "experiment " + s.experiment;
        break;
      case StepKind::kUpdate:
        label += "update";
        break;
      case StepKind::kWebhook:
        label += "webhook " + s.method;
        break;
      case StepKind::kExit:
        label += "exit";
        break;
    }
    const char* shape =
        s.kind == StepKind::kBranch || s.kind == StepKind::kSplit   ? ", shape=diamond"
        : s.kind == StepKind::kWait || s.kind == StepKind::kWaitFor ? ", style=\"rounded,dashed\""
                                                                    : "";
    o << "  " << node(i) << " [label=\"" << Escape(label) << "\"" << shape << "];\n";
  }
  o << "  start -> " << node(0) << ";\n";
  for (size_t i = 0; i < j.steps.size(); ++i) {
    const auto& s = j.steps[i];
    switch (s.kind) {
      case StepKind::kBranch:
        for (const auto& c : s.cases)
          o << "  " << node(i) << " -> " << target(i, c.next) << " [label=\"" << Escape(c.when_text)
            << "\"];\n";
        o << "  " << node(i) << " -> " << target(i, s.else_next) << " [label=\"else\"];\n";
        break;
      case StepKind::kSplit:
        for (const auto& v : s.variants)
          o << "  " << node(i) << " -> " << target(i, v.next) << " [label=\"" << Escape(v.name)
            << " (" << v.weight << ")\"];\n";
        break;
      case StepKind::kWaitFor:
        o << "  " << node(i) << " -> " << target(i, s.on_event.empty() ? s.next : s.on_event)
          << " [label=\"happened\"];\n";
        o << "  " << node(i) << " -> " << target(i, s.on_timeout.empty() ? s.next : s.on_timeout)
          << " [label=\"timeout\", style=dashed];\n";
        break;
      case StepKind::kExit:
        o << "  " << node(i) << " -> end;\n";
        break;
      default:
        o << "  " << node(i) << " -> " << target(i, s.next) << ";\n";
    }
  }
  o << "}\n";
  return o.str();
}

}  // namespace

int RunGraph(const std::string& file, const std::optional<std::string>& out,
             const std::optional<std::string>& svg) {
  auto text = ReadFile(file);
  if (!text) {
    std::fprintf(stderr, "nudge: cannot read %s\n", file.c_str());
    return 2;
  }
  auto j = journey::ParseJourney(*text, file, fs::path(file).stem().string());
  if (!j) {
    std::fprintf(stderr, "nudge: %s\n", j.error().ToString().c_str());
    return 1;
  }
  // A picture of a broken graph would show another journey than the one written (an unknown
  // target drawn as the end): its problems instead, as validate gives them. Templates and
  // segments are validate's to check, with the whole directory.
  const auto problems = journey::CheckJourney(*j, {});
  if (!problems.empty()) {
    for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.ToString().c_str());
    std::fprintf(stderr, "nudge: %zu problem%s; nothing drawn\n", problems.size(),
                 problems.size() == 1 ? "" : "s");
    return 1;
  }
  if (svg && svg->find('\'') != std::string::npos) {
    std::fprintf(stderr, "nudge: --svg: the path may not contain a quote\n");
    return 2;
  }
  const bool have_dot = svg && std::system("command -v dot >/dev/null 2>&1") == 0;
  const std::string dot = Dot(*j);
  if (out) {
    std::ofstream(*out) << dot;
  } else if (!svg || !have_dot) {
    std::fputs(dot.c_str(), stdout);
  }
  if (svg) {
    if (!have_dot) {
      std::fprintf(stderr,
                   "nudge: Graphviz's dot is not installed (apt install graphviz); no SVG, the "
                   "DOT is %s\n",
                   out ? ("in " + *out).c_str() : "on standard output");
      return 1;
    }
    const std::string cmd = "dot -Tsvg -o '" + *svg + "'";
    FILE* p = popen(cmd.c_str(), "w");
    if (!p) return 1;
    std::fputs(dot.c_str(), p);
    if (pclose(p) != 0) {
      std::fprintf(stderr, "nudge: dot failed\n");
      return 1;
    }
  }
  return 0;
}

}  // namespace nudge::app
