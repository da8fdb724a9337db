#include "channel/feedback_processor.h"

#include <nlohmann/json.hpp>

namespace nudge::channel {

using nlohmann::json;

FeedbackProcessor::FeedbackProcessor(store::Store& store, segment::Engine& segments,
                                     const core::Clock& clock, core::MetricsRegistry* metrics)
    : store_(store), segments_(segments), clock_(clock) {
  if (metrics)
    reports_ = &metrics->GetCounter("nudge_feedback_reports_total",
                                    "Bounce, complaint and delivery reports received.");
}

namespace {

// The suppression a report puts on an email address; its detail says what reported it.
store::Suppression SuppressionFor(const Feedback& f, store::WorkspaceId ws,
                                  const std::string& address, const std::string& reason,
                                  core::Millis now) {
  store::Suppression s;
  s.workspace = ws;
  s.channel = "email";
  s.address = address;
  s.reason = reason;
  s.created_at = now;
  s.detail = f.source + (f.status.empty() ? "" : " " + f.status) +
             (f.diagnostic.empty() ? "" : ": " + f.diagnostic.substr(0, 300));
  return s;
}

}  // namespace

Result<FeedbackOutcome> FeedbackProcessor::Apply(const Feedback& f,
                                                 std::optional<store::WorkspaceId> ws_hint) {
  if (reports_) reports_->Add();
  FeedbackOutcome out;
  if (f.kind == Feedback::Kind::kUnknown) {
    out.detail = "nothing to do for this report";
    return out;
  }
  // Find the message, then the contacts.
  std::optional<store::Message> message;
  std::vector<std::pair<store::WorkspaceId, store::ContactId>> targets;
  std::string address = f.recipient;
  NUDGE_TRY(store_.Read([&](store::ReadTxn& r) -> Status {
    for (const auto& [k, v] : f.metadata) {
      if (k != "nudge_message_id") continue;
      char* end = nullptr;
      const long long id = std::strtoll(v.c_str(), &end, 10);
      if (end && *end == '\0' && id > 0) {
        NUDGE_ASSIGN_OR_RETURN(message, r.GetMessage(id));
      }
    }
    if (!message && !f.message_id.empty()) {
      NUDGE_ASSIGN_OR_RETURN(message, r.FindMessageByHeader(f.message_id));
    }
    if (message && ws_hint && message->workspace != *ws_hint) message.reset();
    if (message) {
      if (address.empty()) address = message->recipient;
      targets.emplace_back(message->workspace, message->contact);
      return Status::Ok();
    }
    if (address.empty()) return Status::Ok();
    std::vector<store::WorkspaceId> spaces;
    if (ws_hint) {
      spaces.push_back(*ws_hint);
    } else {
      NUDGE_ASSIGN_OR_RETURN(auto all, r.ListWorkspaces());
      for (const auto& w : all) spaces.push_back(w.id);
    }
    for (store::WorkspaceId ws : spaces) {
      NUDGE_ASSIGN_OR_RETURN(auto c, r.FindContactByEmail(ws, address));
      if (c) targets.emplace_back(ws, c->id);
    }
    return Status::Ok();
  }));
  if (targets.empty()) {
    // A webhook names its workspace: a hard bounce or complaint for an address nudge holds no
    // contact for (yet) still keeps mail from going there.
    const bool blocks =
        f.kind == Feedback::Kind::kHardBounce || f.kind == Feedback::Kind::kComplaint;
    if (ws_hint && blocks && !address.empty()) {
      const store::Suppression s = SuppressionFor(
          f, *ws_hint, address, f.kind == Feedback::Kind::kComplaint ? "complaint" : "hard_bounce",
          clock_.NowMillis());
      NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& txn) { return txn.AddSuppression(s); }));
      out.suppressed = true;
      out.detail =
          std::string(FeedbackKindName(f.kind)) + " for " + address + " (no contact): suppressed";
      return out;
    }
    out.detail = "no message or contact matches this report";
    return out;
  }
  out.matched = true;
  const core::Millis now = clock_.NowMillis();
  const bool hard = f.kind == Feedback::Kind::kHardBounce;
  const bool soft = f.kind == Feedback::Kind::kSoftBounce;
  const bool complaint = f.kind == Feedback::Kind::kComplaint;
  json props{{"source", f.source}};
  if (!f.status.empty()) props["status"] = f.status;
  if (!f.diagnostic.empty()) props["diagnostic"] = f.diagnostic;
  if (!f.subtype.empty()) props["subtype"] = f.subtype;
  if (message) {
    props["message_id"] = message->id;
    props["journey"] = message->journey;
    props["step"] = message->step;
    props["template"] = message->template_id;
    props["channel"] = message->channel;
  }
  std::string event;
  if (hard || soft) {
    event = "Email Bounced";
    props["bounce_type"] = hard ? "hard" : "soft";
  } else if (complaint) {
    event = "Email Marked as Spam";
  } else if (f.kind == Feedback::Kind::kDelivered) {
    event = "Email Delivered";
  }
  const std::string key = "feedback:" + f.source + ":" +
                          (message ? std::to_string(message->id) : address) + ":" +
                          std::string(FeedbackKindName(f.kind)) + ":" + f.status + ":" +
                          f.provider_id + ":" + f.report_id;
  for (const auto& [ws, contact_id] : targets) {
    bool suppress = hard || complaint;
    bool fresh = true;
    std::string reason = complaint ? "complaint" : "hard_bounce";
    NUDGE_TRY(segments_.WriteLocked([&](store::WriteTxn& txn) -> Status {
      const store::ContactId contact = segments_.ResolveLocked(contact_id);
      // The same report again (a webhook retried, a DSN read twice) changes nothing more.
      if (!event.empty()) {
        NUDGE_ASSIGN_OR_RETURN(
            bool seen, txn.HasMessage(ws, segment::Engine::StableEventId(event, key, contact)));
        if (seen) {
          suppress = false;
          fresh = false;
          return Status::Ok();
        }
      }
      if (hard || soft) {
        NUDGE_ASSIGN_OR_RETURN(int64_t softs, txn.CountBounce(contact, hard, now));
        if (soft && softs >= kSoftBouncesToSuppress) {
          suppress = true;
          reason = "hard_bounce";
        }
      }
      if (suppress && !address.empty()) {
        NUDGE_TRY(txn.AddSuppression(SuppressionFor(f, ws, address, reason, now)));
      }
      if (message && message->workspace == ws && (hard || complaint)) {
        NUDGE_TRY(
            txn.UpdateMessageStatus(message->id, hard ? "bounced" : "complained", now,
                                    f.source + " " + f.status + " " + f.diagnostic.substr(0, 300)));
      }
      if (!event.empty() && segments_.TraitsLocked(contact)) {
        NUDGE_TRY(segments_.EmitLocked(txn, contact, event, props.dump(), key, /*stable=*/true));
      }
      return Status::Ok();
    }));
    if (complaint && fresh) {
      store::ConsentRecord r;
      r.subscription = {ws, contact_id, "email", "", "unsubscribed", now};
      r.source = "complaint";
      r.detail = f.source;
      // An unsubscribe like any other: journeys and segments waiting for one see it.
      NUDGE_TRY(segments_.ApplyConsent(r, "Unsubscribed",
                                       json{{"channel", "email"}, {"source", "complaint"}}.dump()));
    }
    out.suppressed = out.suppressed || suppress;
  }
  out.detail = std::string(FeedbackKindName(f.kind)) + " for " +
               (address.empty() ? "an unnamed recipient" : address) +
               (out.suppressed ? ": suppressed" : "");
  return out;
}

}  // namespace nudge::channel
