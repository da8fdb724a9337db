// SmtpClient: one SMTP connection to a relay (RFC 5321), used for many messages in turn.
//
// Connect() opens the connection and gets it ready to send: TCP (or implicit TLS, "SMTPS"),
// the 220 greeting, EHLO (HELO when the server refuses EHLO), STARTTLS when configured (never
// falling back to plain text), then AUTH PLAIN or LOGIN when a user name is configured.
// Send() transfers one message to one recipient: MAIL FROM, RCPT TO and DATA pipelined in one
// write when the server offers PIPELINING, the message dot-stuffed, and the reply to the final
// dot read within the data timeout. A failed transaction is cleared with RSET before the next.
// Quit() says QUIT and closes. Every wait has a deadline (SmtpTimeouts).
//
// Outcomes follow the reply: 2xx after the data is kSent (with the server's text, which names
// its queue id), 4xx is kTemporaryFailure, 5xx kPermanentFailure. A connection problem (time
// out, reset, a reply that is not SMTP, 421) is kTemporaryFailure with code 0 (or 421) and
// leaves the client unusable: connect a new one.
//
// An SmtpClient is owned and used by one thread at a time; it is not thread-safe. EmailSender
// keeps a pool of them on its own threads; use SmtpClient directly only for tools and tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "channel/email/smtp_reply.h"
#include "core/clock.h"
#include "core/result.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace nudge::channel {

class Stream;

enum class TlsMode {
  kNone,      // plain SMTP (a relay on the same host or a private network)
  kStartTls,  // plain connect, then STARTTLS; refuses relays that do not offer it
  kImplicit,  // TLS from the first byte (port 465)
};
std::string_view TlsModeName(TlsMode mode);  // "none", "starttls", "implicit"

// A relay to send through. The fields after `ca_file` matter to EmailSender only.
struct RelayConfig {
  std::string name;  // for metrics, logs and outcomes; unique among the relays
  std::string host;
  int port = 25;
  TlsMode tls = TlsMode::kNone;
  // AUTH when username is not empty. auth_mechanism "plain" or "login" forces one; empty
  // picks PLAIN when offered, else LOGIN.
  std::string username;
  std::string password;
  std::string auth_mechanism;
  // Certificate checks for STARTTLS and implicit TLS: the chain must lead to ca_file (or the
  // system's roots when empty) and the certificate must name `host`. Off only for tests.
  bool tls_verify = true;
  std::string ca_file;

  int pool = 4;     // at most this many connections (EmailSender: one I/O thread each)
  double rate = 0;  // at most this many messages started per second; 0 = no limit
  // Connections that only ever carry transactional mail, so bulk cannot occupy them all.
  // -1 = automatic: 1 when pool >= 2, else 0.
  int transactional_reserved = -1;
};

// Milliseconds allowed for each step.
struct SmtpTimeouts {
  core::Millis connect = 10'000;   // TCP connect and the TLS handshake
  core::Millis greeting = 30'000;  // the 220 banner
  core::Millis command = 30'000;   // each reply to EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET
  core::Millis data = 120'000;     // writing the message and the reply to the final dot
};

struct SmtpClientOptions {
  std::string helo_name;  // EHLO argument; empty = this host's name
  SmtpTimeouts timeouts;
};

enum class SendStatus {
  kSent,              // the relay answered 250 (or another 2xx) to the final dot
  kTemporaryFailure,  // 4xx, or a connection problem: try again later
  kPermanentFailure,  // 5xx (or a local refusal such as a message over the relay's SIZE)
};
std::string_view SendStatusName(SendStatus status);  // "sent", "temporary", "permanent"

// The step a send ended at, for diagnostics and retry decisions.
enum class SmtpStage { kConnect, kMail, kRcpt, kData, kDataEnd };
std::string_view SmtpStageName(SmtpStage stage);  // "connect", "mail", "rcpt", "data", "data_end"

struct SendOutcome {
  SendStatus status = SendStatus::kTemporaryFailure;
  int code = 0;          // the SMTP reply code; 0 when there was no reply (connection problem)
  std::string enhanced;  // "2.0.0", "5.1.1" when the relay sent one
  // The relay's reply text ("Ok: queued as 4BF2A1C0E" for a 250), or what went wrong locally.
  std::string text;
  SmtpStage stage = SmtpStage::kConnect;
  std::string relay;  // the relay's name (EmailSender fills it in)
  int attempts = 1;   // connection attempts made within one EmailSender::Submit
  // Set when the connection failed after the whole message had been written: the relay may
  // have accepted it without our seeing the 250, so a retry may deliver it twice (with the
  // same Message-ID).
  bool maybe_delivered = false;

  bool sent() const { return status == SendStatus::kSent; }
  // "sent 250 2.0.0 Ok: queued as X via primary" and the like, for logs.
  std::string ToString() const;
};

// The TLS settings of one relay, shared by its connections (loading CA roots is not cheap).
// Immutable after creation; thread-safe.
class TlsClientContext {
 public:
  static Result<std::shared_ptr<const TlsClientContext>> Create(bool verify,
                                                                const std::string& ca_file);
  const std::shared_ptr<SSL_CTX>& ssl_ctx() const { return ctx_; }

 private:
  std::shared_ptr<SSL_CTX> ctx_;
};

class SmtpClient {
 public:
  // Opens a ready-to-send connection. tls may be null (one is made when the relay uses TLS).
  // Errors: kUnavailable for network problems, timeouts and 4xx replies (try another relay or
  // later), kUnauthenticated when AUTH is refused (5xx), kFailedPrecondition when the relay
  // lacks what the configuration needs (STARTTLS, an AUTH mechanism), kInvalidArgument for a
  // bad configuration. Messages name the relay and quote its reply.
  static Result<std::unique_ptr<SmtpClient>> Connect(
      const RelayConfig& relay, const SmtpClientOptions& options,
      std::shared_ptr<const TlsClientContext> tls = nullptr);

  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Sends message (RFC 5322 bytes with CRLF line endings; bare LFs are sent as CRLF) from
  // envelope_from to recipient. A message larger than the relay's advertised SIZE fails
  // permanently without being sent. Never blocks longer than the timeouts allow.
  SendOutcome Send(std::string_view envelope_from, std::string_view recipient,
                   std::string_view message);

  // False after a connection problem or a 421; the client then cannot send again.
  bool usable() const { return usable_; }
  // True when the relay has closed an idle connection or sent something unasked (usually a
  // 421 before closing): checks without blocking. A stale client should be discarded.
  bool IsStale();
  // QUIT (waiting at most the command timeout, capped at 5 s) and close. Idempotent.
  void Quit();

  const EhloCapabilities& capabilities() const { return caps_; }
  bool tls_active() const;
  uint64_t messages_sent() const { return messages_sent_; }

 private:
  SmtpClient() = default;
  Status Handshake(const RelayConfig& relay, const SmtpClientOptions& options,
                   const std::shared_ptr<const TlsClientContext>& tls);
  Status Authenticate(const RelayConfig& relay);
  Result<SmtpReply> ReadReply(core::Millis timeout);
  Status WriteCommand(std::string_view command);
  SendOutcome Broken(SmtpStage stage, const Status& why, bool maybe_delivered = false);
  Status WriteStuffed(std::string_view message);

  std::unique_ptr<Stream> stream_;
  SmtpReplyReader reader_;
  std::string relay_name_;
  SmtpTimeouts timeouts_;
  EhloCapabilities caps_;
  bool usable_ = false;
  bool need_rset_ = false;
  uint64_t messages_sent_ = 0;
  std::string scratch_;  // reused buffer for commands and the stuffed message
};

// Dot-stuffs message for DATA (RFC 5321 §4.5.2) and appends it to out: a '.' starting a line
// is doubled, bare LF and CR become CRLF, and the text ends with CRLF. The terminating
// ".\r\n" is not appended.
void AppendDotStuffed(std::string& out, std::string_view message);

}  // namespace nudge::channel
