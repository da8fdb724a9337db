// /api/v1/...: the admin API (Authorization: Bearer <admin key>), docs/openapi.yaml.
#include <nlohmann/json.hpp>

#include "core/crypto.h"
#include "core/time.h"
#include "http/api.h"
#include "http/respond.h"
#include "ingest/json_error.h"
#include "profile/import.h"
#include "profile/normalize.h"
#include "profile/views.h"

namespace nudge::http {
namespace {

using nlohmann::json;
using store::Contact;
using store::ContactId;
using store::WorkspaceId;

constexpr int kDefaultPage = 50;
constexpr int kMaxPage = 1000;
constexpr size_t kMaxImportRows = 5000;

// Finds a contact by the key in a URL: its user id, else an anonymous id, else (with '@')
// its email, else (starting with '+') its phone.
Result<std::optional<Contact>> FindByKey(store::ReadTxn& t, WorkspaceId ws,
                                         const std::string& key) {
  NUDGE_ASSIGN_OR_RETURN(auto c, t.FindContactByUserId(ws, key));
  if (c) return c;
  NUDGE_ASSIGN_OR_RETURN(auto anon, t.FindContactByAnonymousId(ws, key));
  if (anon) return t.GetContact(*anon);
  if (key.find('@') != std::string::npos) {
    if (auto email = profile::NormalizeEmail(key)) return t.FindContactByEmail(ws, *email);
  }
  if (!key.empty() && key.front() == '+') return t.FindContactByPhone(ws, key);
  return std::optional<Contact>();
}

Status NotFoundContact(const std::string& key) {
  return Status::NotFound("no contact with user id, anonymous id, email or phone '" + key + "'");
}

}  // namespace

Result<int> PageLimit(const Request& req, int fallback) {
  const std::string text = req.Query("limit");
  if (text.empty()) return fallback;
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || n < 1 || n > kMaxPage)
    return Err(
        Status::Invalid("must be a whole number from 1 to " + std::to_string(kMaxPage), "limit"));
  return static_cast<int>(n);
}

Result<int64_t> IdCursor(const Request& req) {
  const std::string text = req.Query("cursor");
  if (text.empty()) return int64_t{0};
  auto decoded = core::Base64UrlDecode(text);
  char* end = nullptr;
  int64_t id = 0;
  if (decoded) id = std::strtoll(decoded->c_str(), &end, 10);
  if (!decoded || decoded->empty() || *end != '\0' || id <= 0)
    return Err(Status::Invalid("is not a cursor this API gave out", "cursor"));
  return id;
}

namespace {

// Where a JSON text first nests deeper than `limit` arrays and objects (line:column), if it
// does. Strings are skipped, escapes included; the text need not be valid.
std::optional<std::string> TooDeepAt(std::string_view text, int limit) {
  int depth = 0, line = 1, column = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    ++column;
    if (c == '\n') {
      ++line;
      column = 0;
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return std::to_string(line) + ":" + std::to_string(column);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> UnknownTopicWarnings(const ApiContext& ctx, store::WorkspaceId ws,
                                              const std::vector<std::string>& topics) {
  std::vector<std::string> out;
  if (!ctx.journeys || topics.empty()) return out;
  const journey::Policies policies = ctx.journeys->GetPolicies(ws);
  for (const std::string& topic : topics)
    if (auto why = journey::UnknownTopic(policies, topic)) out.push_back(std::move(*why));
  return out;
}

Result<nlohmann::json> JsonObjectBody(std::string_view text, bool empty_is_object) {
  if (empty_is_object && text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return json::object();
  // Deeper data has no use here, and every later walk of it (rendering it, writing it out)
  // would recurse that deep.
  if (auto at = TooDeepAt(text, kMaxJsonNesting))
    return Err(Status::Invalid(
        "arrays and objects are nested more than " + std::to_string(kMaxJsonNesting) + " deep",
        "request body:" + *at));
  json body = json::parse(text, nullptr, false);
  if (body.is_discarded()) {
    // Where and what, as the tracking API says it.
    const Status e = ingest::DescribeJsonError(text);
    return Err(Status::Invalid(e.message(), "request body:" + e.where()));
  }
  if (!body.is_object())
    return Err(Status::Invalid(
        std::string("the body must be a JSON object, not ") + body.type_name(), "body"));
  return body;
}

namespace {

// The contact's address for a channel, or "" (push has none here).
std::string AddressFor(const store::Contact& c, const std::string& channel) {
  if (channel == "email") return c.email.value_or("");
  if (channel == "sms") return c.phone.value_or("");
  return "";
}

}  // namespace

Status SuppressUnsubscribed(ApiContext& ctx, WorkspaceId ws, store::ContactId contact,
                            const std::string& channel, const std::string& detail) {
  return ctx.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto c, txn.GetContact(contact));
    const std::string address = c ? AddressFor(*c, channel) : "";
    if (address.empty()) return Status::Ok();
    store::Suppression s;
    s.workspace = ws;
    s.channel = channel;
    s.address = address;
    s.reason = "unsubscribed";
    s.detail = detail;
    s.created_at = ctx.clock.NowMillis();
    return txn.AddSuppression(s);
  });
}

Status LiftUnsubscribeSuppression(ApiContext& ctx, WorkspaceId ws, store::ContactId contact,
                                  const std::string& channel) {
  return ctx.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto c, txn.GetContact(contact));
    const std::string address = c ? AddressFor(*c, channel) : "";
    if (address.empty()) return Status::Ok();
    NUDGE_ASSIGN_OR_RETURN(auto existing, txn.FindSuppression(ws, channel, address));
    if (!existing || existing->reason != "unsubscribed") return Status::Ok();
    NUDGE_TRY(txn.RemoveSuppression(ws, channel, address));
    return Status::Ok();
  });
}

Status KnownFields(const nlohmann::json& body, std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    return Status::Invalid("unknown field (known: " + list + ")", key);
  }
  return Status::Ok();
}

std::optional<WorkspaceId> AdminWorkspace(const store::WorkspaceRegistry& workspaces,
                                          const Request& req, Reply& reply) {
  const std::string token = BearerToken(req);
  auto ws = workspaces.ByAdminKey(token);
  if (!ws) {
    Response r = ErrorResponse(
        Status(Code::kUnauthenticated, token.empty() ? "an admin key is required "
                                                       "(Authorization: Bearer <admin key>)"
                                                     : "unknown admin key"));
    r.headers = {{"WWW-Authenticate", "Bearer realm=\"nudge\""}};
    reply(std::move(r));
  }
  return ws;
}

namespace {

class AdminApi {
 public:
  explicit AdminApi(ApiContext& ctx) : ctx_(ctx) {}

  void GetContact(WorkspaceId ws, Request& req, Reply reply) {
    const std::string key = req.params["id"];
    json out;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto c, FindByKey(t, ws, key));
      if (!c) return NotFoundContact(key);
      NUDGE_ASSIGN_OR_RETURN(auto anon, t.ListIdentities(c->id, store::IdentityKind::kAnonymous));
      NUDGE_ASSIGN_OR_RETURN(auto aliases, t.ListIdentities(c->id, store::IdentityKind::kAlias));
      out = profile::ContactJson(*c, anon, aliases);
      if (ctx_.engine) {
        NUDGE_ASSIGN_OR_RETURN(auto history, t.StageHistory(c->id));
        AddEngineView(out, c->id, history);
      }
      return Status::Ok();
    });
    reply(s.ok() ? JsonResponse(out) : ErrorResponse(s));
  }

  // The contact's segments, lead score (with its breakdown by rule) and lifecycle stage.
  void AddEngineView(json& out, store::ContactId id,
                     const std::vector<store::StageEntry>& history) {
    const segment::ContactView v = ctx_.engine->View(id);
    out["segments"] = v.segments;
    json breakdown = json::object();
    for (const auto& [rule, points] : v.score.by_rule) breakdown[rule] = points;
    out["score"] =
        json{{"value", v.score.score},
             {"qualification",
              v.score.qualification.empty() ? json(nullptr) : json(v.score.qualification)},
             {"breakdown", std::move(breakdown)}};
    json hist = json::array();
    for (const auto& h : history)
      hist.push_back(json{{"stage", h.stage},
                          {"previous", h.previous.empty() ? json(nullptr) : json(h.previous)},
                          {"at", core::FormatIso8601(h.at)}});
    out["stage"] =
        json{{"name", v.stage.empty() ? json(nullptr) : json(v.stage)},
             {"since", v.stage.empty() ? json(nullptr) : json(core::FormatIso8601(v.stage_since))},
             {"history", std::move(hist)}};
  }

  void GetContactEvents(WorkspaceId ws, Request& req, Reply reply) {
    const std::string key = req.params["id"];
    auto limit = PageLimit(req, kDefaultPage);
    if (!limit) return reply(ErrorResponse(limit.error()));
    const std::string origin_text = req.Query("origin", "all");
    store::EventOrigin origin = store::EventOrigin::kAll;
    if (origin_text == "client") {
      origin = store::EventOrigin::kClient;
    } else if (origin_text == "nudge") {
      origin = store::EventOrigin::kNudge;
    } else if (origin_text != "all") {
      return reply(ErrorResponse(Status::Invalid("must be all, client or nudge", "origin")));
    }
    json events = json::array();
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto c, FindByKey(t, ws, key));
      if (!c) return NotFoundContact(key);
      NUDGE_ASSIGN_OR_RETURN(auto rows, t.ListEvents(c->id, *limit, origin));
      for (const auto& e : rows) events.push_back(profile::EventJson(e));
      return Status::Ok();
    });
    reply(s.ok() ? JsonResponse(json{{"events", std::move(events)}}) : ErrorResponse(s));
  }

  void ListContacts(WorkspaceId ws, Request& req, Reply reply) {
    auto limit = PageLimit(req, kDefaultPage);
    if (!limit) return reply(ErrorResponse(limit.error()));
    auto after = IdCursor(req);
    if (!after) return reply(ErrorResponse(after.error()));
    json contacts = json::array();
    json next = nullptr;
    int64_t total = 0;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto rows, t.ListContacts(ws, *after, *limit + 1));
      NUDGE_ASSIGN_OR_RETURN(total, t.CountContacts(ws));
      const bool more = static_cast<int>(rows.size()) > *limit;
      if (more) rows.pop_back();
      for (const auto& c : rows) {
        NUDGE_ASSIGN_OR_RETURN(auto anon, t.ListIdentities(c.id, store::IdentityKind::kAnonymous));
        NUDGE_ASSIGN_OR_RETURN(auto aliases, t.ListIdentities(c.id, store::IdentityKind::kAlias));
        contacts.push_back(profile::ContactJson(c, anon, aliases));
      }
      if (more) next = core::Base64UrlEncode(std::to_string(rows.back().id));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(
        json{{"contacts", std::move(contacts)}, {"next_cursor", next}, {"total", total}}));
  }

  void DeleteContact(WorkspaceId ws, Request& req, Reply reply) {
    const std::string key = req.params["id"];
    auto erased = std::make_shared<json>();
    profile::ContactObserver* observer = ctx_.applier.observer();
    ctx_.store.Write(
        [ws, key, erased, observer](store::WriteTxn& t) -> Status {
          NUDGE_ASSIGN_OR_RETURN(auto c, FindByKey(t, ws, key));
          if (!c) return NotFoundContact(key);
          NUDGE_TRY(t.DeleteContact(c->id));
          if (observer) NUDGE_TRY(observer->OnContactDeleted(t, c->id));
          *erased = json{{"deleted", true},
                         {"id", c->id},
                         {"user_id", c->user_id ? json(*c->user_id) : json(nullptr)}};
          return Status::Ok();
        },
        [erased, pipeline = ctx_.pipeline, reply = std::move(reply)](Status s) {
          if (s.ok() && pipeline) pipeline->ForgetAppliedBodies();
          reply(s.ok() ? JsonResponse(*erased) : ErrorResponse(s));
        });
  }

  // POST /api/v1/contacts/import {"import_id","source","tags":[],"contacts":[{"line",
  // "user_id","email","phone","traits":{}}]} -> {"results":[{"line","outcome","contact_id",
  // "reason"}]}
  void ImportContacts(WorkspaceId ws, Request& req, Reply reply) {
    auto request = std::make_shared<profile::ImportRequest>();
    Status parsed = ParseImport(req.body, *request);
    if (!parsed.ok()) return reply(ErrorResponse(parsed));
    auto results = std::make_shared<std::vector<profile::ImportRowResult>>();
    const core::Millis now = ctx_.clock.NowMillis();
    ctx_.store.Write(
        [this, ws, request, results, now](store::WriteTxn& t) -> Status {
          NUDGE_ASSIGN_OR_RETURN(
              *results, profile::ImportContacts(t, ws, *request, ctx_.applier.options(), now,
                                                ctx_.applier.observer()));
          return Status::Ok();
        },
        [results, reply = std::move(reply)](Status s) {
          if (!s.ok()) return reply(ErrorResponse(s));
          json out = json::array();
          for (const auto& r : *results) {
            json row{{"line", r.line},
                     {"outcome", std::string(profile::ImportOutcomeName(r.outcome))}};
            if (r.contact) row["contact_id"] = r.contact;
            if (!r.reason.empty()) row["reason"] = r.reason;
            out.push_back(std::move(row));
          }
          reply(JsonResponse(json{{"results", std::move(out)}}));
        });
  }

  // GET /api/v1/events?after=ID&limit=N&origin=client|nudge|all: the workspace's events as
  // stored (Segment messages), oldest first, for export and for `nudge simulate`.
  void ListEvents(WorkspaceId ws, Request& req, Reply reply) {
    auto limit = PageLimit(req, 500);
    if (!limit) return reply(ErrorResponse(limit.error()));
    int64_t after = 0;
    if (const std::string a = req.Query("after"); !a.empty()) {
      char* end = nullptr;
      after = std::strtoll(a.c_str(), &end, 10);
      if (*end || after < 0)
        return reply(ErrorResponse(Status::Invalid("must be an event id", "after")));
    }
    const std::string origin_text = req.Query("origin", "client");
    store::EventOrigin origin = store::EventOrigin::kClient;
    if (origin_text == "all") {
      origin = store::EventOrigin::kAll;
    } else if (origin_text == "nudge") {
      origin = store::EventOrigin::kNudge;
    } else if (origin_text != "client") {
      return reply(ErrorResponse(Status::Invalid("must be all, client or nudge", "origin")));
    }
    std::string body = "{\"events\":[";
    int64_t last = 0;
    size_t n = 0;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto rows, t.EventsAfter(ws, after, *limit, origin));
      for (const auto& e : rows) {
        if (n++) body += ',';
        body += e.body;
        last = e.id;
      }
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    body += "],\"next_after\":";
    body += n == static_cast<size_t>(*limit) ? std::to_string(last) : "null";
    body += "}";
    Response r;
    r.body = std::move(body);
    reply(std::move(r));
  }

  void GetWorkspace(WorkspaceId ws, Request&, Reply reply) {
    int64_t contacts = 0, events = 0, derived = 0;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(contacts, t.CountContacts(ws));
      NUDGE_ASSIGN_OR_RETURN(events, t.CountEvents(ws, store::EventOrigin::kClient));
      NUDGE_ASSIGN_OR_RETURN(derived, t.CountEvents(ws, store::EventOrigin::kNudge));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(json{{"id", ws},
                            {"name", ctx_.workspaces.NameOf(ws).value_or("")},
                            {"contacts", contacts},
                            {"events", events},
                            {"derived_events", derived}}));
  }

  // POST /api/v1/workspaces {"name"}: only the default workspace's admin key may do this.
  void CreateWorkspace(WorkspaceId ws, Request& req, Reply reply) {
    if (ctx_.workspaces.NameOf(ws) != store::WorkspaceRegistry::kDefault)
      return reply(ErrorResponse(Status(Code::kPermissionDenied,
                                        "only the default workspace's admin key may create "
                                        "workspaces")));
    auto parsed = JsonObjectBody(req.body);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    if (!body.contains("name") || !body["name"].is_string())
      return reply(ErrorResponse(Status::Invalid("is required (a string)", "name")));
    auto keys = ctx_.workspaces.Create(body["name"].get<std::string>());
    if (!keys) return reply(ErrorResponse(keys.error()));
    reply(JsonResponse(json{{"id", keys->id},
                            {"name", keys->name},
                            {"write_key", keys->write_key},
                            {"admin_key", keys->admin_key}},
                       201));
  }

  void ListWorkspaces(WorkspaceId ws, Request&, Reply reply) {
    const bool all = ctx_.workspaces.NameOf(ws) == store::WorkspaceRegistry::kDefault;
    json out = json::array();
    for (const auto& w : ctx_.workspaces.List()) {
      if (!all && w.id != ws) continue;
      out.push_back(
          json{{"id", w.id}, {"name", w.name}, {"created_at", core::FormatIso8601(w.created_at)}});
    }
    reply(JsonResponse(json{{"workspaces", std::move(out)}}));
  }

 private:
  static Status ParseImport(const std::string& text, profile::ImportRequest& out) {
    NUDGE_ASSIGN_OR_RETURN(json body, JsonObjectBody(text));
    auto str = [&](const json& j, const char* key, std::optional<std::string>& dst,
                   const std::string& where) -> Status {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) return Status::Ok();
      if (!it->is_string()) return Status::Invalid("must be a string", where + key);
      if (!it->get<std::string>().empty()) dst = it->get<std::string>();
      return Status::Ok();
    };
    std::optional<std::string> import_id;
    NUDGE_TRY(str(body, "import_id", import_id, ""));
    if (!import_id) return Status::Invalid("is required", "import_id");
    out.import_id = *import_id;
    NUDGE_TRY(str(body, "source", out.source, ""));
    if (auto tags = body.find("tags"); tags != body.end() && !tags->is_null()) {
      if (!tags->is_array()) return Status::Invalid("must be an array of strings", "tags");
      for (const auto& t : *tags) {
        if (!t.is_string()) return Status::Invalid("must be an array of strings", "tags");
        out.tags.push_back(t.get<std::string>());
      }
    }
    auto contacts = body.find("contacts");
    if (contacts == body.end() || !contacts->is_array())
      return Status::Invalid("is required (an array)", "contacts");
    if (contacts->size() > kMaxImportRows)
      return Status(Code::kTooLarge,
                    "at most " + std::to_string(kMaxImportRows) + " contacts per request",
                    "contacts");
    for (size_t i = 0; i < contacts->size(); ++i) {
      const json& c = (*contacts)[i];
      const std::string where = "contacts[" + std::to_string(i) + "].";
      if (!c.is_object())
        return Status::Invalid("must be an object", where.substr(0, where.size() - 1));
      profile::ImportRow row;
      NUDGE_ASSIGN_OR_RETURN(row.line,
                             OptionalField<int64_t>(c, "line", static_cast<int64_t>(i + 1), where));
      NUDGE_TRY(str(c, "user_id", row.user_id, where));
      NUDGE_TRY(str(c, "email", row.email, where));
      NUDGE_TRY(str(c, "phone", row.phone, where));
      if (auto t = c.find("traits"); t != c.end() && !t->is_null()) {
        if (!t->is_object()) return Status::Invalid("must be an object", where + "traits");
        row.traits = t->dump();
      }
      out.rows.push_back(std::move(row));
    }
    return Status::Ok();
  }

  ApiContext& ctx_;
};

}  // namespace

Result<std::optional<Contact>> FindContactByKey(store::ReadTxn& t, WorkspaceId ws,
                                                const std::string& key) {
  return FindByKey(t, ws, key);
}

void AddAdminRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<AdminApi>(ctx);
  auto bind = [api, &ctx](void (AdminApi::*m)(WorkspaceId, Request&, Reply)) {
    return AdminRoute(api, ctx, m);
  };
  router.Add("GET", "/api/v1/contacts", bind(&AdminApi::ListContacts))
      .Add("POST", "/api/v1/contacts/import", bind(&AdminApi::ImportContacts), 16 << 20)
      .Add("GET", "/api/v1/contacts/{id}", bind(&AdminApi::GetContact))
      .Add("DELETE", "/api/v1/contacts/{id}", bind(&AdminApi::DeleteContact))
      .Add("GET", "/api/v1/contacts/{id}/events", bind(&AdminApi::GetContactEvents))
      .Add("GET", "/api/v1/events", bind(&AdminApi::ListEvents))
      .Add("GET", "/api/v1/workspace", bind(&AdminApi::GetWorkspace))
      .Add("GET", "/api/v1/workspaces", bind(&AdminApi::ListWorkspaces))
      .Add("POST", "/api/v1/workspaces", bind(&AdminApi::CreateWorkspace));
}

}  // namespace nudge::http
