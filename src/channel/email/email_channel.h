// The email channel: turns a rendered message into MIME (BuildMessage), adds the footer with
// the postal address and the unsubscribe and preference links, the RFC 8058 one-click
// unsubscribe headers and a Feedback-ID, signs it with DKIM, and hands it to the EmailSender's
// relays (transactional or bulk lane).
//
// Outcomes map SMTP to the pipeline: 250 sent (provider = the relay and its queue id), 4xx and
// connection problems temporary, 5xx permanent; a 5.1.x refusal of the recipient (or a 550,
// 551 or 553 to RCPT without an enhanced code) marks the address bad: a hard bounce.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "channel/channel.h"
#include "channel/email/config.h"
#include "channel/email/dkim.h"
#include "channel/email/sender.h"

namespace nudge::channel {

class EmailChannel final : public Channel {
 public:
  // Starts the sender (no connection is opened yet) and loads the DKIM key.
  static Result<std::unique_ptr<EmailChannel>> Create(const EmailConfig& config,
                                                      const core::Clock& clock,
                                                      core::MetricsRegistry* metrics);
  std::string_view name() const override { return "email"; }
  Status Send(Outbound out, DeliveryCallback done) override;
  void Shutdown(core::Millis drain) override { sender_->Shutdown(drain); }

  // The message exactly as it would be sent (for tests and `preview`), without sending it.
  Result<std::string> Compose(const Outbound& out) const;
  const EmailConfig& config() const { return config_; }
  const EmailSender& sender() const { return *sender_; }

 private:
  EmailChannel(EmailConfig config, const core::Clock& clock)
      : config_(std::move(config)), clock_(clock) {}
  EmailConfig config_;
  const core::Clock& clock_;
  std::unique_ptr<DkimSigner> dkim_;
  std::unique_ptr<EmailSender> sender_;
};

// Adds the footer (postal address, unsubscribe and preference links) to the HTML before
// </body> (or at the end) and to the text part. Values are HTML-escaped.
void AddFooter(std::string& html, std::string& text, const std::string& postal_address,
               const std::string& unsubscribe_url, const std::string& preferences_url);

}  // namespace nudge::channel
