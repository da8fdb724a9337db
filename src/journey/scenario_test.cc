// Runs the journey scenarios in tests/scenarios/*.yaml: workspace files, then a list of
// actions (send, advance, put, pause, restart, ...) and expectations (messages, paths,
// segments, stats) on a virtual clock. The scenario files are the readable specification of
// how journeys behave; this file only interprets them.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/time.h"
#include "journey/sandbox.h"
#include "rules/condition.h"

namespace nudge::journey {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json ToJson(const YAML::Node& n) {
  if (n.IsMap()) {
    json out = json::object();
    for (const auto& kv : n) out[kv.first.Scalar()] = ToJson(kv.second);
    return out;
  }
  if (n.IsSequence()) {
    json out = json::array();
    for (const auto& i : n) out.push_back(ToJson(i));
    return out;
  }
  if (n.IsNull()) return nullptr;
  const std::string& s = n.Scalar();
  if (n.Tag() != "!") {
    if (s == "true" || s == "false") return s == "true";
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0' && (isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-')) {
      if (s.find_first_of(".eE") == std::string::npos) return static_cast<int64_t>(d);
      return d;
    }
  }
  return s;
}

core::Millis Duration(const std::string& text) {
  auto d = rules::ParseDuration(text);
  EXPECT_TRUE(d) << "bad duration " << text;
  return d.value_or(0);
}

class Scenario {
 public:
  Scenario(fs::path file) : file_(std::move(file)) {}

  void Run() {
    YAML::Node doc = YAML::LoadFile(file_.string());
    start_ = *core::ParseIso8601(doc["start"] ? doc["start"].Scalar() : "2026-11-02T09:00:00Z");
    dir_ = fs::temp_directory_path() /
           ("nudge-scenario-" + std::to_string(getpid()) + "-" + file_.stem().string());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "workspace");
    Open(start_);
    if (doc["files"]) {
      for (const auto& kv : doc["files"]) Write(kv.first.Scalar(), kv.second.Scalar());
      Status s = box_->ApplyDirectory((dir_ / "workspace").string());
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    int n = 0;
    for (const auto& action : doc["do"]) {
      ++n;
      SCOPED_TRACE("action " + std::to_string(n) + " at " + core::FormatIso8601(box_->Now()));
      Do(action);
      if (::testing::Test::HasFatalFailure()) return;
    }
    box_.reset();
    fs::remove_all(dir_);
  }

 private:
  void Open(core::Millis now) {
    box_.reset();
    auto box = Sandbox::Create(now, (dir_ / "store").string());
    ASSERT_TRUE(box) << box.error().ToString();
    box_ = std::move(*box);
  }

  void Write(const std::string& rel, const std::string& text) {
    const fs::path p = dir_ / "workspace" / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }

  store::ContactId Contact(const std::string& key) {
    const store::ContactId id = box_->ContactOf(key);
    EXPECT_NE(id, 0) << "no contact '" << key << "'";
    return id;
  }

  // Every key of `want` equals the same key of `got`.
  static bool Matches(const json& got, const json& want, std::string& why) {
    for (auto& [k, v] : want.items()) {
      if (!got.contains(k)) {
        why = k + " is missing";
        return false;
      }
      if (got[k] != v) {
        why = k + " is " + got[k].dump() + ", not " + v.dump();
        return false;
      }
    }
    return true;
  }

  json MessageJson(const store::Message& m) {
    return json{{"to", box_->LabelOf(m.contact)},
                {"journey", m.journey},
                {"step", m.step},
                {"channel", m.channel},
                {"template", m.template_id},
                {"status", m.status},
                {"at", core::FormatIso8601(m.created_at)},
                {"send_at", core::FormatIso8601(m.send_at)},
                {"payload", json::parse(m.payload, nullptr, false)}};
  }

  void Do(const YAML::Node& action) {
    ASSERT_TRUE(action.IsMap() && action.size() == 1) << "each action is one key";
    const std::string verb = action.begin()->first.Scalar();
    const YAML::Node arg = action.begin()->second;
    if (verb == "send") {
      Status s = box_->Send(ToJson(arg).dump());
      ASSERT_TRUE(s.ok()) << s.ToString();
    } else if (verb == "advance") {
      Status s = box_->Advance(Duration(arg.Scalar()));
      ASSERT_TRUE(s.ok()) << s.ToString();
    } else if (verb == "advance_to") {
      Status s = box_->AdvanceTo(*core::ParseIso8601(arg.Scalar()));
      ASSERT_TRUE(s.ok()) << s.ToString();
    } else if (verb == "put") {
      for (const auto& kv : arg) {
        const std::string rel = kv.first.Scalar(), text = kv.second.Scalar();
        Status s = Put(rel, text);
        ASSERT_TRUE(s.ok()) << rel << ": " << s.ToString();
      }
    } else if (verb == "expect_error") {
      const std::string rel = arg["put"].Scalar();
      Status s = Put(rel, arg["text"].Scalar());
      ASSERT_FALSE(s.ok()) << rel << " was accepted";
      for (const auto& want : arg["contains"])
        EXPECT_NE(s.ToString().find(want.Scalar()), std::string::npos)
            << "'" << want.Scalar() << "' not in: " << s.ToString();
    } else if (verb == "pause" || verb == "resume" || verb == "archive") {
      const std::string status = verb == "pause"    ? "paused"
                                 : verb == "resume" ? "active"
                                                    : "archived";
      Status s = box_->journeys().SetStatus(box_->workspace(), arg.Scalar(), status);
      ASSERT_TRUE(s.ok()) << s.ToString();
    } else if (verb == "trigger") {
      auto r = box_->journeys().Trigger(box_->workspace(), arg["journey"].Scalar(),
                                        Contact(arg["to"].Scalar()),
                                        arg["data"] ? ToJson(arg["data"]).dump() : "{}");
      ASSERT_TRUE(r) << r.error().ToString();
    } else if (verb == "restart") {
      // As after a crash: everything in memory is rebuilt from the store. `restart: 3d` keeps
      // nudge down for that long first: no timer fires meanwhile.
      const core::Millis down =
          arg.IsScalar() && arg.Scalar() != "true" ? Duration(arg.Scalar()) : 0;
      const core::Millis now = box_->Now() + down;
      Open(now);
    } else if (verb == "expect_messages") {
      auto all = box_->Messages();
      ASSERT_TRUE(all) << all.error().ToString();
      const json want = ToJson(arg);
      std::string listing;
      for (const auto& m : *all) listing += "\n  " + MessageJson(m).dump();
      ASSERT_EQ(all->size(), want.size()) << "messages:" << listing;
      for (size_t i = 0; i < want.size(); ++i) {
        std::string why;
        EXPECT_TRUE(Matches(MessageJson((*all)[i]), want[i], why))
            << "message " << i << ": " << why << "\nmessages:" << listing;
      }
    } else if (verb == "expect_paths") {
      // { journey: id, paths: [ { to: ann, status: completed, path: [a, b, c] } ] }
      const std::string journey = arg["journey"].Scalar();
      auto instances = box_->Instances(journey);
      ASSERT_TRUE(instances) << instances.error().ToString();
      const json want = ToJson(arg["paths"]);
      std::string listing;
      std::vector<json> got;
      for (const auto& i : *instances) {
        auto path = box_->Path(i.id);
        ASSERT_TRUE(path);
        json steps = json::array();
        for (const auto& [step, outcome, at] : *path)
          if (outcome == "entered") steps.push_back(step);
        json j{{"to", box_->LabelOf(i.contact)},
               {"status", i.status},
               {"path", steps},
               {"version", i.version},
               {"step", i.step}};
        listing += "\n  " + j.dump();
        got.push_back(std::move(j));
      }
      ASSERT_EQ(got.size(), want.size()) << "instances of " << journey << ":" << listing;
      for (size_t i = 0; i < want.size(); ++i) {
        std::string why;
        EXPECT_TRUE(Matches(got[i], want[i], why)) << "instance " << i << ": " << why << listing;
      }
    } else if (verb == "expect_segments") {
      for (const auto& kv : arg) {
        const auto view = box_->segments().View(Contact(kv.first.Scalar()));
        std::vector<std::string> want;
        for (const auto& s : kv.second) want.push_back(s.Scalar());
        EXPECT_EQ(view.segments, want) << kv.first.Scalar();
      }
    } else if (verb == "expect_traits") {
      for (const auto& kv : arg) {
        std::optional<store::Contact> c;
        ASSERT_TRUE(box_->store()
                        .Read([&](store::ReadTxn& t) -> Status {
                          NUDGE_ASSIGN_OR_RETURN(c, t.GetContact(Contact(kv.first.Scalar())));
                          return Status::Ok();
                        })
                        .ok());
        ASSERT_TRUE(c);
        std::string why;
        const json traits = json::parse(c->traits);
        EXPECT_TRUE(Matches(traits, ToJson(kv.second), why))
            << kv.first.Scalar() << ": " << why << " in " << traits.dump();
      }
    } else if (verb == "expect_score") {
      for (const auto& kv : arg)
        EXPECT_DOUBLE_EQ(box_->segments().View(Contact(kv.first.Scalar())).score.score,
                         std::stod(kv.second.Scalar()))
            << kv.first.Scalar();
    } else if (verb == "expect_events") {
      // { to: ann, names: [Journey Entered, ...] } -- the contact's events with these names,
      // in order, among all its events; optionally `properties: [{...}, ...]`, what each of
      // them must have in its properties (values and types), in the same order.
      auto events = box_->Events(Contact(arg["to"].Scalar()));
      ASSERT_TRUE(events);
      std::set<std::string> names;
      for (const auto& n : arg["names"]) names.insert(n.Scalar());
      std::vector<std::string> got, want;
      std::vector<const store::Event*> matched;
      for (const auto& e : *events)
        if (names.count(e.name)) {
          got.push_back(e.name);
          matched.push_back(&e);
        }
      for (const auto& n : arg["sequence"]) want.push_back(n.Scalar());
      EXPECT_EQ(got, want);
      if (arg["properties"]) {
        ASSERT_EQ(arg["properties"].size(), matched.size());
        for (size_t i = 0; i < matched.size(); ++i) {
          const json body = json::parse(matched[i]->body, nullptr, false);
          ASSERT_TRUE(body.is_object() && body.contains("properties")) << matched[i]->body;
          std::string why;
          EXPECT_TRUE(Matches(body["properties"], ToJson(arg["properties"][i]), why))
              << matched[i]->name << " #" << i << ": " << why << " in " << matched[i]->body;
        }
      }
    } else if (verb == "expect_stats") {
      // { journey: id, steps: { step: { entered: 1, waiting: 0, ... } } }
      auto stats = box_->journeys().Stats(box_->workspace(), arg["journey"].Scalar());
      ASSERT_TRUE(stats) << stats.error().ToString();
      for (const auto& kv : arg["steps"]) {
        const auto it = std::find_if(stats->begin(), stats->end(), [&](const StepStats& s) {
          return s.step == kv.first.Scalar();
        });
        ASSERT_NE(it, stats->end()) << kv.first.Scalar();
        const json got{{"entered", it->entered},     {"waiting", it->waiting},
                       {"completed", it->completed}, {"exited", it->exited},
                       {"converted", it->converted}, {"skipped", it->skipped}};
        std::string why;
        EXPECT_TRUE(Matches(got, ToJson(kv.second), why)) << kv.first.Scalar() << ": " << why;
      }
    } else {
      FAIL() << "unknown action '" << verb << "'";
    }
  }

  Status Put(const std::string& rel, const std::string& text) {
    Write(rel, text);
    const std::string source = rel;
    if (rel.rfind("journeys/", 0) == 0) return box_->PutJourney(text, source);
    if (rel.rfind("segments/", 0) == 0) return box_->PutSegment(text, source);
    if (rel == "policies.yaml") return box_->PutPolicies(text, source);
    if (rel == "scoring.yaml") return box_->PutScoring(text, source);
    if (rel == "stages.yaml") return box_->PutStages(text, source);
    return Status::Invalid("unknown file kind", rel);
  }

  fs::path file_;
  fs::path dir_;
  core::Millis start_ = 0;
  std::unique_ptr<Sandbox> box_;
};

class ScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, Runs) { Scenario(GetParam()).Run(); }

std::vector<std::string> Files() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(NUDGE_SCENARIO_DIR))
    if (e.path().extension() == ".yaml") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioTest, ::testing::ValuesIn(Files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = fs::path(info.param).stem().string();
                           for (char& c : name)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace nudge::journey
