#include "channel/email/email_channel.h"

#include "channel/email/message.h"

namespace nudge::channel {
namespace {

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

bool ContainsUrl(const std::string& haystack, const std::string& url) {
  return !url.empty() && (haystack.find(url) != std::string::npos ||
                          haystack.find(Escape(url)) != std::string::npos);
}

}  // namespace

void AddFooter(std::string& html, std::string& text, const std::string& postal_address,
               const std::string& unsubscribe_url, const std::string& preferences_url) {
  const bool html_has_unsub = ContainsUrl(html, unsubscribe_url);
  const bool text_has_unsub = ContainsUrl(text, unsubscribe_url);
  if (!html.empty()) {
    std::string footer;
    if (!postal_address.empty() && html.find(Escape(postal_address)) == std::string::npos)
      footer += Escape(postal_address);
    if (!html_has_unsub && !unsubscribe_url.empty()) {
      if (!footer.empty()) footer += "<br>";
      footer += "<a href=\"" + Escape(unsubscribe_url) + "\">Unsubscribe</a>";
      if (!preferences_url.empty())
        footer += " &middot; <a href=\"" + Escape(preferences_url) + "\">Email preferences</a>";
    }
    if (!footer.empty()) {
      footer = "<div style=\"margin-top:24px;font-size:12px;color:#6b7280\">" + footer + "</div>";
      size_t at = html.rfind("</body>");
      if (at == std::string::npos) at = html.rfind("</BODY>");
      if (at == std::string::npos) {
        html += footer;
      } else {
        html.insert(at, footer);
      }
    }
  }
  if (!text.empty()) {
    std::string footer;
    if (!postal_address.empty() && text.find(postal_address) == std::string::npos)
      footer += postal_address + "\n";
    if (!text_has_unsub && !unsubscribe_url.empty())
      footer += "Unsubscribe: " + unsubscribe_url + "\n";
    if (!text_has_unsub && !preferences_url.empty())
      footer += "Email preferences: " + preferences_url + "\n";
    if (!footer.empty()) {
      if (text.back() != '\n') text += '\n';
      text += "\n--\n" + footer;
    }
  }
}

Result<std::unique_ptr<EmailChannel>> EmailChannel::Create(const EmailConfig& config,
                                                           const core::Clock& clock,
                                                           core::MetricsRegistry* metrics) {
  std::unique_ptr<EmailChannel> ch(new EmailChannel(config, clock));
  if (config.dkim) {
    NUDGE_ASSIGN_OR_RETURN(ch->dkim_, DkimSigner::FromConfig(*config.dkim));
  }
  SenderOptions options = config.ToSenderOptions();
  options.metrics = metrics;
  NUDGE_ASSIGN_OR_RETURN(ch->sender_, EmailSender::Create(std::move(options)));
  return ch;
}

Result<std::string> EmailChannel::Compose(const Outbound& out) const {
  const content::RenderedMessage& r = out.rendered;
  EmailContent c;
  c.from = config_.from;
  if (!r.from.empty()) {
    NUDGE_ASSIGN_OR_RETURN(c.from, ParseMailbox(r.from));
  }
  c.to.address = out.recipient;
  if (!r.reply_to.empty()) {
    NUDGE_ASSIGN_OR_RETURN(Mailbox reply, ParseMailbox(r.reply_to));
    c.reply_to = std::move(reply);
  }
  c.subject = r.subject;
  c.preheader = r.preheader;
  c.html = r.html;
  c.text = r.text;
  AddFooter(c.html, c.text, config_.postal_address,
            out.transactional ? std::string() : out.unsubscribe_url,
            out.transactional ? std::string() : out.preferences_url);
  if (!out.transactional && !out.unsubscribe_url.empty()) {
    std::string value = "<" + out.unsubscribe_url + ">";
    if (!out.unsubscribe_mailto.empty()) value += ", <" + out.unsubscribe_mailto + ">";
    c.headers.emplace_back("List-Unsubscribe", value);
    c.headers.emplace_back("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
  }
  if (!out.feedback_id.empty()) c.headers.emplace_back("Feedback-ID", out.feedback_id);
  c.message_id = out.message_id_header;
  NUDGE_ASSIGN_OR_RETURN(std::string bytes, BuildMessage(c, clock_));
  if (dkim_) NUDGE_TRY(dkim_->Sign(bytes));
  return bytes;
}

Status EmailChannel::Send(Outbound out, DeliveryCallback done) {
  auto bytes = Compose(out);
  if (!bytes) {
    DeliveryResult r;
    r.status = DeliveryStatus::kPermanent;
    r.detail = bytes.error().ToString();
    done(std::move(r));
    return Status::Ok();
  }
  const Lane lane = out.transactional ? Lane::kTransactional : Lane::kBulk;
  return sender_->Submit(
      config_.from.address, out.recipient, std::move(*bytes), lane,
      [done = std::move(done)](const SendOutcome& o) {
        DeliveryResult r;
        r.code = o.code;
        r.detail = o.ToString();
        r.provider = o.relay;
        r.maybe_delivered = o.maybe_delivered;
        switch (o.status) {
          case SendStatus::kSent:
            r.status = DeliveryStatus::kSent;
            break;
          case SendStatus::kTemporaryFailure:
            r.status = DeliveryStatus::kTemporary;
            break;
          case SendStatus::kPermanentFailure:
            r.status = DeliveryStatus::kPermanent;
            r.bad_address =
                o.stage == SmtpStage::kRcpt &&
                (o.enhanced.rfind("5.1.", 0) == 0 ||
                 (o.enhanced.empty() && (o.code == 550 || o.code == 551 || o.code == 553)));
            break;
        }
        done(std::move(r));
      });
}

}  // namespace nudge::channel
