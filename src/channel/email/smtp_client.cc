#include "channel/email/smtp_client.h"

#include <unistd.h>

#include <algorithm>

#include "channel/email/internal/stream.h"
#include "core/crypto.h"

namespace nudge::channel {

std::string_view TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kNone:
      return "none";
    case TlsMode::kStartTls:
      return "starttls";
    case TlsMode::kImplicit:
      return "implicit";
  }
  return "none";
}

std::string_view SendStatusName(SendStatus status) {
  switch (status) {
    case SendStatus::kSent:
      return "sent";
    case SendStatus::kTemporaryFailure:
      return "temporary";
    case SendStatus::kPermanentFailure:
      return "permanent";
  }
  return "temporary";
}

std::string_view SmtpStageName(SmtpStage stage) {
  switch (stage) {
    case SmtpStage::kConnect:
      return "connect";
    case SmtpStage::kMail:
      return "mail";
    case SmtpStage::kRcpt:
      return "rcpt";
    case SmtpStage::kData:
      return "data";
    case SmtpStage::kDataEnd:
      return "data_end";
  }
  return "connect";
}

std::string SendOutcome::ToString() const {
  std::string out(SendStatusName(status));
  if (code != 0) out += " " + std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  if (!text.empty()) out += " " + text;
  if (status != SendStatus::kSent) out += " (at " + std::string(SmtpStageName(stage)) + ")";
  if (!relay.empty()) out += " via " + relay;
  return out;
}

Result<std::shared_ptr<const TlsClientContext>> TlsClientContext::Create(
    bool verify, const std::string& ca_file) {
  NUDGE_ASSIGN_OR_RETURN(std::shared_ptr<SSL_CTX> ctx, NewClientSslContext(verify, ca_file));
  auto context = std::shared_ptr<TlsClientContext>(new TlsClientContext());
  context->ctx_ = std::move(ctx);
  return std::shared_ptr<const TlsClientContext>(std::move(context));
}

namespace {

// Dot-stuffing state carried across slices of one message.
struct StuffState {
  bool line_start = true;
  bool after_cr = false;  // the previous slice ended in CR: a leading LF belongs to it
};

void StuffInto(std::string& out, std::string_view text, StuffState& st) {
  size_t i = 0;
  if (st.after_cr && !text.empty() && text[0] == '\n') i = 1;
  st.after_cr = false;
  while (i < text.size()) {
    if (st.line_start && text[i] == '.') out += '.';
    size_t j = i;
    while (j < text.size() && text[j] != '\r' && text[j] != '\n') ++j;
    out.append(text.data() + i, j - i);
    if (j == text.size()) {
      st.line_start = false;
      return;
    }
    out += "\r\n";
    st.line_start = true;
    if (text[j] == '\r') {
      if (j + 1 < text.size() && text[j + 1] == '\n') {
        ++j;
      } else if (j + 1 == text.size()) {
        st.after_cr = true;
      }
    }
    i = j + 1;
  }
}

}  // namespace

void AppendDotStuffed(std::string& out, std::string_view message) {
  out.reserve(out.size() + message.size() + message.size() / 64 + 4);
  StuffState st;
  StuffInto(out, message, st);
  if (!st.line_start) out += "\r\n";
}

namespace {

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

SendOutcome FromReply(const SmtpReply& reply, SmtpStage stage) {
  SendOutcome o;
  o.status = reply.positive()    ? SendStatus::kSent
             : reply.transient() ? SendStatus::kTemporaryFailure
                                 : SendStatus::kPermanentFailure;
  o.code = reply.code;
  o.enhanced = reply.enhanced;
  o.text = reply.Text();
  o.stage = stage;
  return o;
}

}  // namespace

SmtpClient::~SmtpClient() = default;

bool SmtpClient::tls_active() const { return stream_ && stream_->tls(); }

Result<std::unique_ptr<SmtpClient>> SmtpClient::Connect(
    const RelayConfig& relay, const SmtpClientOptions& options,
    std::shared_ptr<const TlsClientContext> tls) {
  if (relay.host.empty()) return Err(Status::Invalid("the relay has no host", "host"));
  if (relay.port <= 0 || relay.port > 65535)
    return Err(Status::Invalid("the port must be 1 to 65535", "port"));
  if (relay.tls != TlsMode::kNone && !tls) {
    NUDGE_ASSIGN_OR_RETURN(tls, TlsClientContext::Create(relay.tls_verify, relay.ca_file));
  }
  std::unique_ptr<SmtpClient> client(new SmtpClient());
  client->relay_name_ = relay.name.empty() ? relay.host : relay.name;
  client->timeouts_ = options.timeouts;
  Status s = client->Handshake(relay, options, tls);
  if (!s.ok())
    return Err(Status(s.code(), "relay " + client->relay_name_ + " (" + relay.host + ":" +
                                    std::to_string(relay.port) + "): " + s.message()));
  client->usable_ = true;
  return client;
}

Status SmtpClient::Handshake(const RelayConfig& relay, const SmtpClientOptions& options,
                             const std::shared_ptr<const TlsClientContext>& tls) {
  NUDGE_ASSIGN_OR_RETURN(stream_,
                         Stream::Connect(relay.host, relay.port, DeadlineIn(timeouts_.connect)));
  if (relay.tls == TlsMode::kImplicit)
    NUDGE_TRY(stream_->StartTls(tls->ssl_ctx(), relay.host, DeadlineIn(timeouts_.connect)));

  auto greeting = ReadReply(timeouts_.greeting);
  if (!greeting)
    return Status::Unavailable("waiting for the greeting: " + greeting.error().message());
  if (greeting->code != 220)
    return Status::Unavailable("the relay refused the connection: " + greeting->ToString());

  const std::string helo = options.helo_name.empty() ? HostName() : options.helo_name;
  auto ehlo = [&]() -> Status {
    NUDGE_TRY(WriteCommand("EHLO " + helo + "\r\n"));
    NUDGE_ASSIGN_OR_RETURN(SmtpReply reply, ReadReply(timeouts_.command));
    if (reply.code == 250) {
      caps_ = ParseEhlo(reply);
      return Status::Ok();
    }
    if (!reply.permanent()) return Status::Unavailable("EHLO: " + reply.ToString());
    // An old server: HELO, and no extensions.
    NUDGE_TRY(WriteCommand("HELO " + helo + "\r\n"));
    NUDGE_ASSIGN_OR_RETURN(SmtpReply helo_reply, ReadReply(timeouts_.command));
    if (helo_reply.code != 250)
      return Status(helo_reply.permanent() ? Code::kFailedPrecondition : Code::kUnavailable,
                    "HELO: " + helo_reply.ToString());
    caps_ = EhloCapabilities{};
    return Status::Ok();
  };
  NUDGE_TRY(ehlo());

  if (relay.tls == TlsMode::kStartTls) {
    if (!caps_.starttls)
      return Status(Code::kFailedPrecondition,
                    "tls is starttls but the relay does not offer STARTTLS");
    NUDGE_TRY(WriteCommand("STARTTLS\r\n"));
    NUDGE_ASSIGN_OR_RETURN(SmtpReply reply, ReadReply(timeouts_.command));
    if (reply.code != 220) return Status::Unavailable("STARTTLS: " + reply.ToString());
    // Anything sent before the handshake would be read as if it came over TLS (CVE-2011-0411).
    if (reader_.buffered() != 0 || stream_->Readable())
      return Status::Unavailable("the relay sent data before the TLS handshake");
    NUDGE_TRY(stream_->StartTls(tls->ssl_ctx(), relay.host, DeadlineIn(timeouts_.connect)));
    NUDGE_TRY(ehlo());
    if (!caps_.esmtp) return Status::Unavailable("EHLO after STARTTLS was refused");
  }
  if (!relay.username.empty()) NUDGE_TRY(Authenticate(relay));
  return Status::Ok();
}

Status SmtpClient::Authenticate(const RelayConfig& relay) {
  std::string mechanism = relay.auth_mechanism;
  for (char& c : mechanism) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (mechanism.empty()) {
    if (caps_.HasAuth("PLAIN")) {
      mechanism = "PLAIN";
    } else if (caps_.HasAuth("LOGIN")) {
      mechanism = "LOGIN";
    } else {
      std::string offered;
      for (const std::string& m : caps_.auth) offered += (offered.empty() ? "" : " ") + m;
      return Status(Code::kFailedPrecondition,
                    "a username is configured but the relay offers no AUTH PLAIN or LOGIN" +
                        (offered.empty() ? std::string(" (no AUTH at all")
                                         : std::string(" (it offers ") + offered) +
                        (stream_->tls() ? ")" : "; some relays offer AUTH only over TLS)"));
    }
  } else if (mechanism != "PLAIN" && mechanism != "LOGIN") {
    return Status::Invalid("auth must be plain or login, not '" + relay.auth_mechanism + "'");
  } else if (!caps_.HasAuth(mechanism)) {
    return Status(Code::kFailedPrecondition, "the relay does not offer AUTH " + mechanism);
  }

  auto refused = [](const SmtpReply& reply) {
    return Status(reply.permanent() ? Code::kUnauthenticated : Code::kUnavailable,
                  "AUTH refused: " + reply.ToString());
  };
  if (mechanism == "PLAIN") {
    std::string token;
    token += '\0';
    token += relay.username;
    token += '\0';
    token += relay.password;
    NUDGE_TRY(WriteCommand("AUTH PLAIN " + core::Base64Encode(token) + "\r\n"));
    NUDGE_ASSIGN_OR_RETURN(SmtpReply reply, ReadReply(timeouts_.command));
    if (reply.code != 235) return refused(reply);
    return Status::Ok();
  }
  NUDGE_TRY(WriteCommand("AUTH LOGIN\r\n"));
  NUDGE_ASSIGN_OR_RETURN(SmtpReply ask_user, ReadReply(timeouts_.command));
  if (ask_user.code != 334) return refused(ask_user);
  NUDGE_TRY(WriteCommand(core::Base64Encode(relay.username) + "\r\n"));
  NUDGE_ASSIGN_OR_RETURN(SmtpReply ask_pass, ReadReply(timeouts_.command));
  if (ask_pass.code != 334) return refused(ask_pass);
  NUDGE_TRY(WriteCommand(core::Base64Encode(relay.password) + "\r\n"));
  NUDGE_ASSIGN_OR_RETURN(SmtpReply done, ReadReply(timeouts_.command));
  if (done.code != 235) return refused(done);
  return Status::Ok();
}

Result<SmtpReply> SmtpClient::ReadReply(core::Millis timeout) {
  const Deadline deadline = DeadlineIn(timeout);
  while (true) {
    NUDGE_ASSIGN_OR_RETURN(std::optional<SmtpReply> reply, reader_.Next());
    if (reply) return std::move(*reply);
    std::string chunk;
    NUDGE_TRY(stream_->ReadSome(chunk, deadline));
    reader_.Feed(chunk);
  }
}

Status SmtpClient::WriteCommand(std::string_view command) {
  return stream_->Write(command, DeadlineIn(timeouts_.command));
}

SendOutcome SmtpClient::Broken(SmtpStage stage, const Status& why, bool maybe_delivered) {
  usable_ = false;
  SendOutcome o;
  o.status = SendStatus::kTemporaryFailure;
  o.stage = stage;
  o.text = "connection problem: " + why.message();
  o.maybe_delivered = maybe_delivered;
  return o;
}

Status SmtpClient::WriteStuffed(std::string_view message) {
  // Stuff and write in slices so a large message does not need a second full-size copy.
  constexpr size_t kSlice = 256 * 1024;
  const Deadline deadline = DeadlineIn(timeouts_.data);
  StuffState st;
  size_t pos = 0;
  do {
    const size_t end = std::min(message.size(), pos + kSlice);
    scratch_.clear();
    StuffInto(scratch_, message.substr(pos, end - pos), st);
    if (end == message.size()) {
      if (!st.line_start) scratch_ += "\r\n";
      scratch_ += ".\r\n";
    }
    NUDGE_TRY(stream_->Write(scratch_, deadline));
    pos = end;
  } while (pos < message.size());
  return Status::Ok();
}

bool SmtpClient::IsStale() {
  if (!usable_ || !stream_) return true;
  if (reader_.buffered() != 0 || stream_->Readable()) {
    usable_ = false;
    return true;
  }
  return false;
}

void SmtpClient::Quit() {
  if (stream_ && usable_) {
    usable_ = false;
    const core::Millis wait = std::min<core::Millis>(timeouts_.command, 5000);
    if (stream_->Write("QUIT\r\n", DeadlineIn(wait)).ok()) (void)ReadReply(wait);
  }
  usable_ = false;
  stream_.reset();
}

SendOutcome SmtpClient::Send(std::string_view envelope_from, std::string_view recipient,
                             std::string_view message) {
  if (!usable_ || !stream_)
    return Broken(SmtpStage::kConnect, Status::Unavailable("the connection is closed"));
  if (caps_.size && *caps_.size > 0 && message.size() > *caps_.size) {
    SendOutcome o;
    o.status = SendStatus::kPermanentFailure;
    o.code = 552;
    o.enhanced = "5.3.4";
    o.text = "the message (" + std::to_string(message.size()) +
             " bytes) is larger than the relay's limit (SIZE " + std::to_string(*caps_.size) +
             "); not sent";
    o.stage = SmtpStage::kMail;
    return o;
  }

  std::string commands;
  const bool pipelined = caps_.pipelining;
  const bool rset = need_rset_;
  if (rset) commands += "RSET\r\n";
  const size_t mail_at = commands.size();
  commands += "MAIL FROM:<";
  commands += envelope_from;
  commands += ">";
  if (caps_.size) commands += " SIZE=" + std::to_string(message.size());
  commands += "\r\n";
  const size_t rcpt_at = commands.size();
  commands += "RCPT TO:<";
  commands += recipient;
  commands += ">\r\n";
  const size_t data_at = commands.size();
  commands += "DATA\r\n";
  need_rset_ = false;

  // Without PIPELINING each command waits for its reply; with it, all go in one write
  // (RFC 2920: DATA may end a group) and the replies are read in order.
  std::optional<SendOutcome> failure;
  auto finish_failure = [&](SendOutcome o) {
    need_rset_ = true;
    return o;
  };
  auto check = [&](const SmtpReply& reply, SmtpStage stage, int want) -> bool {
    if (reply.code == want || (want == 250 && reply.positive() && reply.code != 354)) return true;
    if (!failure) failure = FromReply(reply, stage);
    if (reply.code == 421) usable_ = false;
    return false;
  };

  if (pipelined) {
    if (Status s = WriteCommand(commands); !s.ok()) return Broken(SmtpStage::kMail, s);
    if (rset) {
      auto reply = ReadReply(timeouts_.command);
      if (!reply) return Broken(SmtpStage::kMail, reply.error());
      if (reply->code == 421)
        return Broken(SmtpStage::kMail, Status::Unavailable(reply->ToString()));
    }
    auto mail = ReadReply(timeouts_.command);
    if (!mail) return Broken(SmtpStage::kMail, mail.error());
    check(*mail, SmtpStage::kMail, 250);
    auto rcpt = ReadReply(timeouts_.command);
    if (!rcpt) return usable_ ? Broken(SmtpStage::kRcpt, rcpt.error()) : finish_failure(*failure);
    check(*rcpt, SmtpStage::kRcpt, 250);
    auto data = ReadReply(timeouts_.command);
    if (!data) return usable_ ? Broken(SmtpStage::kData, data.error()) : finish_failure(*failure);
    const bool go = check(*data, SmtpStage::kData, 354);
    if (!usable_) return finish_failure(*failure);
    if (go && failure) {
      // The server took DATA although MAIL or RCPT failed: send an empty message's end.
      if (Status s = stream_->Write(".\r\n", DeadlineIn(timeouts_.data)); !s.ok())
        return Broken(SmtpStage::kData, s);
      auto end = ReadReply(timeouts_.data);
      if (!end) return Broken(SmtpStage::kDataEnd, end.error());
      return finish_failure(*failure);
    }
    if (failure) return finish_failure(*failure);
  } else {
    struct Step {
      size_t from, to;
      SmtpStage stage;
      int want;
    };
    const Step steps[] = {{0, mail_at, SmtpStage::kMail, 250},
                          {mail_at, rcpt_at, SmtpStage::kMail, 250},
                          {rcpt_at, data_at, SmtpStage::kRcpt, 250},
                          {data_at, commands.size(), SmtpStage::kData, 354}};
    for (const Step& step : steps) {
      if (step.from == step.to) continue;
      const bool is_rset = step.from == 0 && rset;
      if (Status s =
              WriteCommand(std::string_view(commands).substr(step.from, step.to - step.from));
          !s.ok())
        return Broken(step.stage, s);
      auto reply = ReadReply(timeouts_.command);
      if (!reply) return Broken(step.stage, reply.error());
      if (is_rset) {
        if (reply->code == 421)
          return Broken(SmtpStage::kMail, Status::Unavailable(reply->ToString()));
        continue;
      }
      if (!check(*reply, step.stage, step.want)) return finish_failure(*failure);
    }
  }

  if (Status s = WriteStuffed(message); !s.ok()) return Broken(SmtpStage::kData, s);
  auto end = ReadReply(timeouts_.data);
  if (!end) return Broken(SmtpStage::kDataEnd, end.error(), /*maybe_delivered=*/true);
  SendOutcome outcome = FromReply(*end, SmtpStage::kDataEnd);
  if (end->code == 421) usable_ = false;
  if (outcome.sent()) {
    ++messages_sent_;
  } else {
    need_rset_ = true;
  }
  return outcome;
}

}  // namespace nudge::channel
