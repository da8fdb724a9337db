#include "journey/sandbox.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "core/files.h"
#include "core/yaml.h"
#include "segment/definitions.h"

namespace nudge::journey {
namespace {

namespace fs = std::filesystem;

Result<std::string> ReadFile(const fs::path& path) {
  auto text = core::ReadFile(path);
  if (!text) return Err(Status::Invalid("cannot read the file", path.string()));
  return *text;
}

using core::YamlFiles;

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::Create(Millis start, const std::string& dir) {
  std::unique_ptr<Sandbox> s(new Sandbox(start));
  if (dir.empty()) {
    static std::atomic<int> counter{0};
    s->dir_ = (fs::temp_directory_path() /
               ("nudge-sandbox-" + std::to_string(getpid()) + "-" + std::to_string(counter++)))
                  .string();
    s->remove_dir_ = true;
    fs::remove_all(s->dir_);
  } else {
    s->dir_ = dir;
  }
  std::error_code ec;
  fs::create_directories(s->dir_, ec);
  if (ec) return Err(Status::Internal("cannot create " + s->dir_ + ": " + ec.message()));
  NUDGE_ASSIGN_OR_RETURN(s->store_, store::OpenSqliteStore({.path = s->dir_ + "/nudge.db"}));
  NUDGE_TRY(s->store_->WriteSync([&](store::WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto all, t.ListWorkspaces());
    if (!all.empty()) {
      s->ws_ = all[0].id;
      return Status::Ok();
    }
    NUDGE_ASSIGN_OR_RETURN(
        s->ws_, t.InsertWorkspace({0, "sandbox", "sandbox-write", "sandbox-admin", start}));
    return Status::Ok();
  }));
  s->cache_ = std::make_unique<profile::ContactCache>();
  s->segments_ =
      std::make_unique<segment::Engine>(*s->store_, *s->cache_, s->clock_, nullptr,
                                        segment::EngineOptions{.background_threads = false});
  Sandbox* raw = s.get();
  s->journeys_ = std::make_unique<Engine>(
      *s->store_, *s->segments_, *s->cache_, s->clock_, nullptr,
      EngineOptions{.background_threads = false,
                    .transactional = [raw](store::WorkspaceId, const std::string& id) {
                      return raw->transactional_.count(id) > 0;
                    }});
  s->segments_->SetDownstream(s->journeys_.get());
  NUDGE_TRY(s->segments_->Load());
  NUDGE_TRY(s->journeys_->Load());
  s->applier_ = std::make_unique<profile::Applier>(profile::ProfileOptions{}, s->segments_.get());
  return s;
}

Sandbox::~Sandbox() {
  if (journeys_) journeys_->Stop();
  if (segments_) segments_->Stop();
  applier_.reset();
  journeys_.reset();
  segments_.reset();
  cache_.reset();
  if (store_) store_->Close();
  store_.reset();
  if (remove_dir_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

Status Sandbox::PutSegment(const std::string& yaml, const std::string& source) {
  const std::string stem = fs::path(source).stem().string();
  NUDGE_ASSIGN_OR_RETURN(auto def, segment::ParseSegment(yaml, source));
  (void)stem;
  NUDGE_ASSIGN_OR_RETURN(auto info, segments_->PutSegment(ws_, std::move(def)));
  (void)info;
  segments_->WaitIdle();
  return Status::Ok();
}

Status Sandbox::PutJourney(const std::string& yaml, const std::string& source) {
  NUDGE_ASSIGN_OR_RETURN(auto info, journeys_->PutJourney(ws_, yaml, source, std::nullopt));
  (void)info;
  segments_->WaitIdle();
  return Status::Ok();
}

Status Sandbox::PutPolicies(const std::string& yaml, const std::string& source) {
  NUDGE_ASSIGN_OR_RETURN(auto p, ParsePolicies(yaml, source));
  return journeys_->PutPolicies(ws_, std::move(p));
}

Status Sandbox::PutScoring(const std::string& yaml, const std::string& source) {
  NUDGE_ASSIGN_OR_RETURN(auto def, segment::ParseScoring(yaml, source));
  return segments_->PutScoring(ws_, std::move(def));
}

Status Sandbox::PutStages(const std::string& yaml, const std::string& source) {
  NUDGE_ASSIGN_OR_RETURN(auto def, segment::ParseStages(yaml, source));
  return segments_->PutStages(ws_, std::move(def));
}

Status Sandbox::ApplyDirectory(const std::string& dir_text) {
  const fs::path dir(dir_text);
  // Segments may name each other: retry those that name a segment not yet applied.
  std::vector<fs::path> waiting = YamlFiles(dir / "segments");
  for (int pass = 0; pass < 16 && !waiting.empty(); ++pass) {
    std::vector<fs::path> next;
    Status last;
    for (const auto& f : waiting) {
      NUDGE_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
      Status s = PutSegment(text, "segments/" + f.filename().string());
      if (s.ok()) continue;
      if (s.message().find("unknown segment") == std::string::npos) return s;
      next.push_back(f);
      last = s;
    }
    if (next.size() == waiting.size()) return last;
    waiting = std::move(next);
  }
  for (const auto& [name, put] : std::vector<
           std::pair<std::string, Status (Sandbox::*)(const std::string&, const std::string&)>>{
           {"scoring", &Sandbox::PutScoring},
           {"stages", &Sandbox::PutStages},
           {"policies", &Sandbox::PutPolicies}}) {
    for (const char* ext : {".yaml", ".yml"}) {
      const fs::path f = dir / (name + ext);
      if (!fs::exists(f)) continue;
      NUDGE_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
      NUDGE_TRY((this->*put)(text, f.filename().string()));
    }
  }
  // Which templates are transactional (their sends skip quiet hours and caps); the rest of a
  // template is delivery's, which a rehearsal does not run.
  for (const auto& f : YamlFiles(dir / "templates")) {
    NUDGE_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
    auto doc = core::LoadYaml(text, "templates/" + f.filename().string());
    if (!doc) continue;  // validate reports it
    auto id = core::YamlString(*doc, doc->root, "id");
    auto tx = core::YamlBool(*doc, doc->root, "transactional");
    if (tx && *tx && **tx) transactional_.insert(id && *id ? **id : f.stem().string());
  }
  for (const auto& f : YamlFiles(dir / "journeys")) {
    NUDGE_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
    NUDGE_TRY(PutJourney(text, "journeys/" + f.filename().string()));
  }
  return Status::Ok();
}

Result<std::vector<ingest::Message>> Sandbox::Parse(const std::string& message_json) {
  NUDGE_ASSIGN_OR_RETURN(
      auto parsed, ingest::ParseRequest(ingest::Endpoint::kBatch,
                                        "{\"batch\":[" + message_json + "]}", clock_.NowMillis()));
  // Recorded events without a messageId get a deterministic one: runs repeat exactly.
  for (auto& m : parsed.messages) {
    if (message_json.find("\"messageId\"") == std::string::npos) {
      const std::string id = "sandbox-" + std::to_string(++sent_);
      const std::string old = "\"messageId\":\"" + m.message_id + "\"";
      const auto pos = m.body.find(old);
      if (pos != std::string::npos) m.body.replace(pos, old.size(), "\"messageId\":\"" + id + "\"");
      m.message_id = id;
    }
  }
  return std::move(parsed.messages);
}

Status Sandbox::Send(const std::string& message_json) {
  NUDGE_ASSIGN_OR_RETURN(auto messages, Parse(message_json));
  return store_->WriteSync([&](store::WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto r, applier_->Apply(t, ws_, messages));
    (void)r;
    return Status::Ok();
  });
}

Status Sandbox::AdvanceTo(Millis target) {
  for (int guard = 0; guard < 10'000'000; ++guard) {
    std::optional<Millis> due = segments_->NextDue();
    if (auto j = journeys_->NextDue(); j && (!due || *j < *due)) due = j;
    if (!due || *due > target) break;
    if (*due > clock_.NowMillis()) clock_.Set(*due);
    NUDGE_TRY(segments_->RunDue());
    NUDGE_TRY(journeys_->RunDue());
  }
  if (target > clock_.NowMillis()) clock_.Set(target);
  NUDGE_TRY(segments_->RunDue());
  return journeys_->RunDue();
}

store::ContactId Sandbox::ContactOf(const std::string& key) {
  store::ContactId id = 0;
  (void)store_->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto c, t.FindContactIdByUserId(ws_, key));
    if (!c) {
      NUDGE_ASSIGN_OR_RETURN(c, t.FindContactByAnonymousId(ws_, key));
    }
    if (c) id = *c;
    return Status::Ok();
  });
  return id;
}

std::string Sandbox::LabelOf(store::ContactId id) {
  std::string label = "#" + std::to_string(id);
  (void)store_->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto c, t.GetContact(id));
    if (c && c->user_id) {
      label = *c->user_id;
      return Status::Ok();
    }
    NUDGE_ASSIGN_OR_RETURN(auto anon, t.ListIdentities(id, store::IdentityKind::kAnonymous));
    if (!anon.empty()) label = anon[0];
    return Status::Ok();
  });
  return label;
}

Result<std::vector<store::Message>> Sandbox::Messages() {
  std::vector<store::Message> out;
  NUDGE_TRY(store_->Read([&](store::ReadTxn& t) -> Status {
    store::MessageFilter f;
    f.workspace = ws_;
    f.limit = 1'000'000;
    NUDGE_ASSIGN_OR_RETURN(out, t.ListMessages(f));
    return Status::Ok();
  }));
  std::reverse(out.begin(), out.end());  // oldest first
  return out;
}

Result<std::vector<store::Instance>> Sandbox::Instances(const std::string& journey) {
  std::vector<store::Instance> out;
  NUDGE_TRY(store_->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(out, t.ListInstances(ws_, journey, std::nullopt, 1'000'000, 0));
    return Status::Ok();
  }));
  std::reverse(out.begin(), out.end());
  return out;
}

Result<std::vector<std::tuple<std::string, std::string, Millis>>> Sandbox::Path(int64_t instance) {
  std::vector<std::tuple<std::string, std::string, Millis>> out;
  NUDGE_TRY(store_->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(out, t.InstanceSteps(instance));
    return Status::Ok();
  }));
  return out;
}

Result<std::vector<store::Event>> Sandbox::Events(store::ContactId id) {
  std::vector<store::Event> out;
  NUDGE_TRY(store_->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(out, t.ListEvents(id, 1'000'000));
    return Status::Ok();
  }));
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace nudge::journey
