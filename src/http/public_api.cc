// What recipients and providers reach without an admin key (docs/openapi.yaml, "Public"):
//   GET  /t/o/{token}            the open pixel                     → "Email Opened"
//   GET  /t/c/{token}            a click redirect (302)             → "Email Link Clicked"
//   GET  /t/u/{token}            "unsubscribe?" page (never unsubscribes: link scanners GET)
//   POST /t/u/{token}            RFC 8058 one-click or the page's button → "Unsubscribed"
//   GET/POST /t/p/{token}        the preference page (channels, topics, unsubscribe from all)
//   GET  /t/k/{token}            double opt-in confirmation         → "Subscription Confirmed"
//   GET  /t/v/{token}            the message in a browser
//   POST /hooks/ses|sendgrid|postmark?key=<write key>   bounces and complaints
//   POST /hooks/sms/inbound?key=<write key>             replies to SMS (STOP/START)
// Tokens are signed (track/links.h): a tampered or foreign token is refused, and a click can
// only go where nudge's own message pointed.
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "channel/feedback/webhooks.h"
#include "channel/feedback_processor.h"
#include "channel/sms/sms.h"
#include "content/image/image.h"
#include "core/crypto.h"
#include "core/time.h"
#include "http/api.h"
#include "http/respond.h"
#include "profile/normalize.h"
#include "track/pages.h"

namespace nudge::http {
namespace {

using nlohmann::json;
using store::WorkspaceId;
using track::LinkClaims;
using track::LinkKind;

Response Html(std::string body, int status = 200) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Robots-Tag", "noindex");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  return r;
}

Response HtmlError(const Status& s) {
  const int code = s.code() == Code::kPermissionDenied ? 403
                   : s.code() == Code::kNotFound       ? 404
                                                       : 400;
  return Html(track::ErrorPage(s.code() == Code::kPermissionDenied
                                   ? "This link is not valid. It may have been altered."
                                   : s.message()),
              code);
}

// Which privacy proxy fetched a pixel, from its user agent ("" for none seen).
std::string ProxyOf(const std::string& user_agent) {
  if (user_agent.find("GoogleImageProxy") != std::string::npos) return "google";
  if (user_agent.find("YahooMailProxy") != std::string::npos) return "yahoo";
  // Apple Mail Privacy Protection prefetches with a bare "Mozilla/5.0".
  if (user_agent == "Mozilla/5.0") return "apple";
  if (user_agent.find("Microsoft Office") != std::string::npos &&
      user_agent.find("ms-office") != std::string::npos)
    return "";
  return "";
}

class PublicApi {
 public:
  explicit PublicApi(ApiContext& ctx)
      : ctx_(ctx), feedback_(ctx.store, *ctx.engine, ctx.clock, &ctx.metrics) {}

  Result<LinkClaims> Verify(const Request& req, LinkKind kind) {
    std::string token = req.params.at("token");
    // The pixel may carry an image extension.
    if (kind == LinkKind::kOpen && token.size() > 4 &&
        token.compare(token.size() - 4, 4, ".gif") == 0)
      token.resize(token.size() - 4);
    return VerifyToken(token, kind);
  }

  // Tokens carry their workspace in the signed claims; the claim is checked with that
  // workspace's secret, and only for a workspace that exists.
  Result<LinkClaims> VerifyToken(const std::string& token, LinkKind kind) {
    NUDGE_ASSIGN_OR_RETURN(WorkspaceId ws, PeekWorkspace(token));
    if (!ctx_.workspaces.NameOf(ws)) return Err(Status::Invalid("not a link nudge made"));
    NUDGE_ASSIGN_OR_RETURN(track::LinkSigner signer, ctx_.secrets->SignerFor(ws));
    NUDGE_ASSIGN_OR_RETURN(LinkClaims c, signer.Verify(token));
    if (c.kind != kind) return Err(Status::Invalid("this link is not for this page"));
    return c;
  }

  // The workspace a token claims ("<kind>|<ws>|..." in its first part), verified afterwards.
  static Result<WorkspaceId> PeekWorkspace(const std::string& token) {
    const size_t dot = token.rfind('.');
    if (dot == std::string::npos || token.size() > 8192)
      return Err(Status::Invalid("not a link nudge made"));
    auto claims = core::Base64UrlDecode(token.substr(0, dot));
    if (!claims || claims->size() < 4 || (*claims)[1] != '|')
      return Err(Status::Invalid("not a link nudge made"));
    const size_t end = claims->find('|', 2);
    if (end == std::string::npos) return Err(Status::Invalid("not a link nudge made"));
    const std::string ws = claims->substr(2, end - 2);
    char* stop = nullptr;
    const long long id = std::strtoll(ws.c_str(), &stop, 10);
    if (ws.empty() || ws.size() > 18 || *stop != '\0' || id <= 0)
      return Err(Status::Invalid("not a link nudge made"));
    return static_cast<WorkspaceId>(id);
  }

  std::optional<store::Message> MessageOf(const LinkClaims& c) {
    if (c.message == 0) return std::nullopt;
    std::optional<store::Message> m;
    (void)ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(m, t.GetMessage(c.message));
      return Status::Ok();
    });
    if (m && (m->workspace != c.workspace || m->contact == 0)) m.reset();
    return m;
  }

  json MessageProps(const LinkClaims& c, const std::optional<store::Message>& m) {
    json p{{"channel", c.channel}};
    if (c.message) p["message_id"] = c.message;
    if (m) {
      p["journey"] = m->journey;
      p["step"] = m->step;
      p["template"] = m->template_id;
      p["instance"] = m->instance;
    }
    return p;
  }

  // Records an event on the contact without holding up the response.
  void EmitAsync(store::ContactId contact, std::string name, json props, std::string key) {
    ctx_.engine->WriteLockedAsync(
        [this, contact, name = std::move(name), props = props.dump(),
         key = std::move(key)](store::WriteTxn& txn) -> Status {
          const store::ContactId c = ctx_.engine->ResolveLocked(contact);
          if (!ctx_.engine->TraitsLocked(c)) return Status::Ok();  // erased
          return ctx_.engine->EmitLocked(txn, c, name, props, key);
        },
        nullptr);
  }

  std::string UniqueKey(const char* what, const LinkClaims& c) {
    return std::string(what) + ":" + std::to_string(c.message) + ":" +
           std::to_string(ctx_.clock.NowMillis()) + ":" + core::RandomToken(6);
  }

  // ---- /t/... ----

  void Open(Request& req, Reply reply) {
    Response gif;
    gif.content_type = "image/gif";
    gif.body = track::TransparentGif();
    gif.headers.emplace_back("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0");
    auto c = Verify(req, LinkKind::kOpen);
    if (!c) return reply(gif);  // a broken pixel still answers an image, and records nothing
    const auto m = MessageOf(*c);
    json props = MessageProps(*c, m);
    const std::string ua = req.Header("user-agent");
    const std::string proxy = ProxyOf(ua);
    props["proxy"] = proxy.empty() ? json(nullptr) : json(proxy);
    props["machine_open"] = proxy == "apple";
    props["user_agent"] = ua;
    EmitAsync(c->contact, "Email Opened", std::move(props), UniqueKey("open", *c));
    reply(gif);
  }

  void Click(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kClick);
    if (!c) return reply(HtmlError(c.error()));
    if (!track::IsRedirectable(c->extra))
      return reply(
          HtmlError(Status::Invalid("this link does not lead anywhere nudge may send you")));
    const auto m = MessageOf(*c);
    json props = MessageProps(*c, m);
    props["url"] = c->extra;
    props["user_agent"] = req.Header("user-agent");
    EmitAsync(c->contact, c->channel == "sms" ? "SMS Link Clicked" : "Email Link Clicked",
              std::move(props), UniqueKey("click", *c));
    Response r;
    r.status = 302;
    r.content_type = "text/plain";
    r.body = "Redirecting to " + c->extra + "\n";
    r.headers.emplace_back("Location", c->extra);
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
    reply(std::move(r));
  }

  std::string TopicName(WorkspaceId ws, const std::string& topic) {
    for (const auto& t : ctx_.journeys->GetPolicies(ws).topics)
      if (t.id == topic) return t.name;
    return topic;
  }

  std::string What(const LinkClaims& c) {
    const std::string channel = c.channel == "sms" ? "text messages" : "emails";
    if (c.extra.empty())
      return channel + " from " + ctx_.workspaces.NameOf(c.workspace).value_or("us");
    return "\"" + TopicName(c.workspace, c.extra) + "\" " + channel;
  }

  std::string Self(const Request& req) { return ctx_.public_url + req.path; }

  std::string PreferencesUrl(const LinkClaims& c) {
    LinkClaims p = c;
    p.kind = LinkKind::kPreferences;
    p.extra.clear();
    auto signer = ctx_.secrets->SignerFor(c.workspace);
    return signer ? ctx_.public_url + track::LinkPath(*signer, p) : "";
  }

  // Unsubscribes (channel, or topic) and suppresses the address when it is the whole channel.
  Status Unsubscribe(const LinkClaims& c, const std::string& channel, const std::string& topic,
                     const std::string& source, const std::string& ip,
                     const std::optional<store::Message>& m) {
    store::ConsentRecord r;
    r.subscription = {c.workspace, c.contact,      channel,
                      topic,       "unsubscribed", ctx_.clock.NowMillis()};
    r.source = source;
    r.ip = ip;
    if (m) r.detail = "message " + std::to_string(m->id);
    json props = MessageProps(c, m);
    props["channel"] = channel;
    props["source"] = source;
    if (!topic.empty()) props["topic"] = topic;
    NUDGE_TRY(ctx_.engine->ApplyConsent(r, "Unsubscribed", props.dump()));
    if (!topic.empty()) return Status::Ok();
    return SuppressUnsubscribed(ctx_, c.workspace, c.contact, channel, source);
  }

  void UnsubscribePage(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kUnsubscribe);
    if (!c) return reply(HtmlError(c.error()));
    reply(Html(track::UnsubscribeConfirmPage(What(*c), Self(req))));
  }

  static bool OneClick(std::string_view body) {
    if (body.find("List-Unsubscribe=One-Click") != std::string_view::npos) return true;
    const size_t name = body.find("name=\"List-Unsubscribe\"");
    if (name == std::string_view::npos) return false;
    size_t value = body.find("\r\n\r\n", name);
    if (value != std::string_view::npos) {
      value += 4;
    } else if ((value = body.find("\n\n", name)) != std::string_view::npos) {
      value += 2;
    } else {
      return false;
    }
    return body.substr(value).starts_with("One-Click");
  }

  void UnsubscribePost(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kUnsubscribe);
    if (!c) return reply(HtmlError(c.error()));
    // RFC 8058: the body is "List-Unsubscribe=One-Click", urlencoded or (as the RFC says it
    // should be) a multipart/form-data part; the confirmation page's button sends its own form.
    // Either unsubscribes.
    const bool one_click = OneClick(req.body);
    const auto m = MessageOf(*c);
    Status s = Unsubscribe(*c, c->channel, c->extra, one_click ? "one_click" : "unsubscribe_link",
                           req.remote_ip, m);
    if (!s.ok()) return reply(HtmlError(s));
    reply(Html(track::UnsubscribedPage(What(*c), PreferencesUrl(*c))));
  }

  // An unsubscribe by mail: the mailto of List-Unsubscribe has the subject "unsubscribe <token>".
  Status MailUnsubscribe(std::string_view subject, const std::string& /*from*/) {
    std::string token(subject);
    const size_t sp = token.find_last_of(" \t");
    if (sp != std::string::npos) token = token.substr(sp + 1);
    while (!token.empty() && (token.back() == '\r' || token.back() == '\n')) token.pop_back();
    NUDGE_ASSIGN_OR_RETURN(LinkClaims c, VerifyToken(token, LinkKind::kUnsubscribe));
    const auto m = MessageOf(c);
    // No IP address comes with a mail; the sender is not one.
    return Unsubscribe(c, c.channel, c.extra, "mailto", "", m);
  }

  std::vector<track::PreferenceItem> Items(const LinkClaims& c) {
    std::vector<track::PreferenceItem> items;
    const auto policies = ctx_.journeys->GetPolicies(c.workspace);
    items.push_back({"email", "Email", ctx_.engine->Subscribed(c.contact, "email", "")});
    for (const auto& t : policies.topics)
      items.push_back({"email/" + t.id, t.name, ctx_.engine->Subscribed(c.contact, "email", t.id)});
    std::optional<store::Contact> contact;
    (void)ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(contact, t.GetContact(c.contact));
      return Status::Ok();
    });
    if (contact && contact->phone)
      items.push_back({"sms", "Text messages", ctx_.engine->Subscribed(c.contact, "sms", "")});
    return items;
  }

  void PreferencesGet(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kPreferences);
    if (!c) return reply(HtmlError(c.error()));
    reply(Html(track::PreferencesPage(Items(*c), Self(req), "")));
  }

  void PreferencesPost(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kPreferences);
    if (!c) return reply(HtmlError(c.error()));
    const auto form = track::ParseForm(req.body);
    // The page sends on=<key> for each box left ticked and all=off for "unsubscribe from
    // everything"; <key>=1 and unsubscribe_all=1 are accepted too (forms of one's own).
    auto checked = [&](const std::string& key) {
      for (const auto& [k, v] : form)
        if ((k == "on" && v == key) || (k == key && !v.empty())) return true;
      return false;
    };
    bool all_off = checked("unsubscribe_all");
    for (const auto& [k, v] : form) all_off = all_off || (k == "all" && v == "off");
    const auto m = MessageOf(*c);
    auto save = [&](const track::PreferenceItem& item) -> Status {
      const bool want = !all_off && checked(item.key);
      if (want == item.subscribed) return Status::Ok();
      const size_t slash = item.key.find('/');
      const std::string channel = item.key.substr(0, slash);
      const std::string topic = slash == std::string::npos ? "" : item.key.substr(slash + 1);
      if (!want) return Unsubscribe(*c, channel, topic, "preference_page", req.remote_ip, m);
      store::ConsentRecord r;
      r.subscription = {c->workspace, c->contact,   channel,
                        topic,        "subscribed", ctx_.clock.NowMillis()};
      r.source = "preference_page";
      r.ip = req.remote_ip;
      json props{{"channel", channel}, {"source", "preference_page"}};
      if (!topic.empty()) props["topic"] = topic;
      Status s = ctx_.engine->ApplyConsent(r, "Subscribed", props.dump());
      if (s.ok() && topic.empty())
        s = LiftUnsubscribeSuppression(ctx_, c->workspace, c->contact, channel);
      return s;
    };
    // Channels first; then the topics, compared with what they show after that. A topic shows
    // unticked while its channel is off: left unticked when the channel is ticked again, it
    // must be recorded as unsubscribed, or it would come back with the channel.
    for (bool topics : {false, true}) {
      for (const auto& item : Items(*c)) {
        if ((item.key.find('/') != std::string::npos) != topics) continue;
        if (Status s = save(item); !s.ok()) return reply(HtmlError(s));
      }
    }
    reply(Html(track::PreferencesPage(Items(*c), Self(req), "Your preferences are saved.")));
  }

  void Confirm(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kConfirm);
    if (!c) return reply(HtmlError(c.error()));
    const std::string channel = c->extra.empty() ? c->channel : c->extra;
    store::ConsentRecord r;
    r.subscription = {c->workspace, c->contact, channel, "", "subscribed", ctx_.clock.NowMillis()};
    r.source = "confirm_link";
    r.ip = req.remote_ip;
    json props{{"channel", channel}, {"source", "confirm_link"}};
    if (c->message) props["message_id"] = c->message;
    Status s = ctx_.engine->ApplyConsent(r, "Subscription Confirmed", props.dump());
    if (s.ok()) s = LiftUnsubscribeSuppression(ctx_, c->workspace, c->contact, channel);
    if (!s.ok()) return reply(HtmlError(s));
    reply(Html(track::ConfirmedPage(channel == "sms" ? "text messages" : "emails")));
  }

  void View(Request& req, Reply reply) {
    auto c = Verify(req, LinkKind::kView);
    if (!c) return reply(HtmlError(c.error()));
    if (!ctx_.delivery) return reply(HtmlError(Status::NotFound("no such message")));
    auto html = ctx_.delivery->BrowserView(c->message);
    if (!html) return reply(HtmlError(html.error()));
    reply(Html(std::move(*html)));
  }

  // ---- /i/{template}/{token}.{png|jpg|webp} ----

  void Image(Request& req, Reply reply) {
    // <token>.png|.jpg|.webp, or <token> alone for the template's own format (a token holds
    // a '.' of its own: what follows the last one is a format only when it names one).
    const std::string file = req.params.at("file");
    size_t dot = file.rfind('.');
    std::optional<content::ImageFormat> format;
    if (dot != std::string::npos) {
      if (auto named = content::ParseImageFormat(file.substr(dot + 1))) {
        format = *named;
      } else {
        dot = std::string::npos;
      }
    }
    auto c = VerifyToken(file.substr(0, dot), LinkKind::kImage);
    if (!c) return reply(HtmlError(c.error()));
    const std::string& id = req.params.at("template");
    if (c->extra != id)
      return reply(HtmlError(Status(Code::kPermissionDenied, "not this image's link")));
    if (!ctx_.images || !ctx_.delivery)
      return reply(HtmlError(Status::NotFound("no image template '" + id + "'")));
    if (!format) {
      auto info = ctx_.images->Get(c->workspace, id);
      if (!info) return reply(HtmlError(Status::NotFound("no image template '" + id + "'")));
      format = info->tmpl->default_format();
    }
    auto m = MessageOf(*c);
    // A contact erased since the message was sent gets the image without personal data.
    auto context = ctx_.delivery->ContextFor(c->workspace, c->contact, m ? &*m : nullptr);
    auto lc = content::Context::FromJson(context ? *context : json::object());
    if (!lc) return reply(HtmlError(lc.error()));
    auto r = ctx_.images->Render(c->workspace, id, *lc, *format);
    if (!r) return reply(HtmlError(r.error()));
    if (r->fallback) {
      spdlog::warn("image '{}' for contact {}: {}; served the fallback", id, c->contact, r->error);
      ctx_.metrics
          .GetCounter("nudge_image_fallbacks_total", "image renders that served the fallback")
          .Add();
    }
    Response resp;
    resp.status = 200;
    resp.content_type = std::string(r->image->content_type());
    resp.body = r->image->bytes;
    resp.headers.emplace_back("Cache-Control", "private, max-age=86400");
    if (r->fallback) resp.headers.emplace_back("X-Nudge-Image", "fallback");
    reply(std::move(resp));
  }

  // ---- /hooks/... ----

  std::optional<WorkspaceId> HookWorkspace(const Request& req) {
    std::string key = req.Query("key");
    if (key.empty()) key = BasicUser(req).value_or("");
    return ctx_.workspaces.ByWriteKey(key);
  }

  // The 401 of a hook: a key that no workspace has, or none at all.
  static Response HookUnauthorized(const Request& req) {
    const bool given = !req.Query("key").empty() || BasicUser(req).has_value();
    return ErrorResponse(Status(Code::kUnauthenticated,
                                given
                                    ? "unknown write key (?key= is no workspace's write key)"
                                    : "a write key is required (?key=<write key> or Basic auth)"));
  }

  void Feedback(Request& req, Reply reply,
                Result<channel::WebhookResult> (*parse)(std::string_view,
                                                        const channel::WebhookLimits&)) {
    auto ws = HookWorkspace(req);
    if (!ws) return reply(HookUnauthorized(req));
    auto parsed = parse(req.body, channel::WebhookLimits{});
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json out{{"received", parsed->feedback.size()}, {"ignored", parsed->ignored_events}};
    if (!parsed->subscribe_url.empty()) {
      // SNS asks to confirm the subscription; nudge fetches nothing itself: the operator opens
      // the URL (it is logged and returned).
      out["subscribe_url"] = parsed->subscribe_url;
      out["note"] = "open subscribe_url once to confirm the SNS subscription";
    }
    json results = json::array();
    for (const auto& f : parsed->feedback) {
      auto r = feedback_.Apply(f, *ws);
      if (!r) return reply(ErrorResponse(r.error()));
      results.push_back({{"kind", channel::FeedbackKindName(f.kind)},
                         {"recipient", f.recipient},
                         {"matched", r->matched},
                         {"suppressed", r->suppressed}});
    }
    out["results"] = results;
    reply(JsonResponse(out));
  }

  void Ses(Request& req, Reply reply) {
    Feedback(req, std::move(reply), &channel::ParseSesWebhook);
  }
  void SendGrid(Request& req, Reply reply) {
    Feedback(req, std::move(reply), &channel::ParseSendGridWebhook);
  }
  void Postmark(Request& req, Reply reply) {
    Feedback(req, std::move(reply), &channel::ParsePostmarkWebhook);
  }

  // Twilio's inbound message webhook: From, To, Body as a form, signed with the account token.
  void SmsInbound(Request& req, Reply reply) {
    auto ws = HookWorkspace(req);
    if (!ws) return reply(HookUnauthorized(req));
    std::map<std::string, std::string> form;
    for (auto& [k, v] : track::ParseForm(req.body)) form[k] = v;
    if (ctx_.channels && ctx_.channels->sms && !ctx_.channels->sms->token.empty()) {
      std::string url = ctx_.public_url + req.path;
      if (!req.query.empty()) {
        url += "?";
        bool first = true;
        for (const auto& [k, v] : req.query) {
          if (!first) url += "&";
          first = false;
          url += k + "=" + v;
        }
      }
      const std::string want = channel::TwilioSignature(ctx_.channels->sms->token, url, form);
      if (req.Header("x-twilio-signature") != want)
        return reply(ErrorResponse(
            Status(Code::kPermissionDenied, "X-Twilio-Signature does not match this request")));
    }
    const std::string from = form.count("From") ? form["From"] : "";
    const std::string body = form.count("Body") ? form["Body"] : "";
    auto phone = profile::NormalizePhone(from, ctx_.applier.options().default_region);
    if (!phone) return reply(ErrorResponse(Status::Invalid("not a phone number", "From")));
    std::optional<store::Contact> contact;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(contact, t.FindContactByPhone(*ws, *phone));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    Response twiml;
    twiml.content_type = "text/xml";
    twiml.body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";
    if (!contact) return reply(twiml);
    const channel::SmsKeyword kw = channel::ClassifyReply(body);
    json props{{"from", *phone}, {"body", body.substr(0, 1600)}};
    if (kw == channel::SmsKeyword::kStop || kw == channel::SmsKeyword::kStart) {
      const bool stop = kw == channel::SmsKeyword::kStop;
      store::ConsentRecord r;
      r.subscription = {*ws,
                        contact->id,
                        "sms",
                        "",
                        stop ? "unsubscribed" : "subscribed",
                        ctx_.clock.NowMillis()};
      r.source = stop ? "sms_stop" : "sms_start";
      r.detail = body.substr(0, 200);
      props["channel"] = "sms";
      props["source"] = r.source;
      s = ctx_.engine->ApplyConsent(r, stop ? "Unsubscribed" : "Subscribed", props.dump());
      if (!s.ok()) return reply(ErrorResponse(s));
      if (stop) {
        store::Suppression sup{*ws,
                               "sms",
                               *phone,
                               "unsubscribed",
                               ctx_.clock.NowMillis(),
                               "replied " + body.substr(0, 40)};
        s = ctx_.store.WriteSync([&](store::WriteTxn& txn) { return txn.AddSuppression(sup); });
      } else {
        s = ctx_.store.WriteSync([&](store::WriteTxn& txn) -> Status {
          auto r2 = txn.RemoveSuppression(*ws, "sms", *phone);
          return r2 ? Status::Ok() : r2.error();
        });
      }
      if (!s.ok()) return reply(ErrorResponse(s));
    } else {
      const std::string sid = form.count("MessageSid") ? form["MessageSid"] : core::RandomToken(8);
      EmitAsync(contact->id, "SMS Received", props, "sms-in:" + sid);
    }
    reply(twiml);
  }

 private:
  ApiContext& ctx_;
  channel::FeedbackProcessor feedback_;
};

}  // namespace

void AddPublicRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<PublicApi>(ctx);
  ctx.mail_unsubscribe = [api](std::string_view subject, const std::string& from) {
    return api->MailUnsubscribe(subject, from);
  };
  auto bind = [api](void (PublicApi::*m)(Request&, Reply)) {
    return [api, m](Request& req, Reply reply) { ((*api).*m)(req, std::move(reply)); };
  };
  router.Add("GET", "/t/o/{token}", bind(&PublicApi::Open), 0)
      .Add("GET", "/t/c/{token}", bind(&PublicApi::Click), 0)
      .Add("GET", "/t/u/{token}", bind(&PublicApi::UnsubscribePage), 0)
      .Add("POST", "/t/u/{token}", bind(&PublicApi::UnsubscribePost), 4096)
      .Add("GET", "/t/p/{token}", bind(&PublicApi::PreferencesGet), 0)
      .Add("POST", "/t/p/{token}", bind(&PublicApi::PreferencesPost), 16384)
      .Add("GET", "/t/k/{token}", bind(&PublicApi::Confirm), 0)
      .Add("GET", "/t/v/{token}", bind(&PublicApi::View), 0)
      .Add("GET", "/i/{template}/{file}", bind(&PublicApi::Image), 0)
      .Add("POST", "/hooks/ses", bind(&PublicApi::Ses), 8 << 20)
      .Add("POST", "/hooks/sendgrid", bind(&PublicApi::SendGrid), 8 << 20)
      .Add("POST", "/hooks/postmark", bind(&PublicApi::Postmark), 1 << 20)
      .Add("POST", "/hooks/sms/inbound", bind(&PublicApi::SmsInbound), 64 << 10);
}

}  // namespace nudge::http
