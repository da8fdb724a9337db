#include "channel/feedback/smtp_listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nudge::channel {
namespace {

using namespace std::chrono_literals;

// A blocking test client speaking raw SMTP.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  void Send(const std::string& text) {
    size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = ::send(fd_, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  // One whole reply (all lines of a multi-line reply), without the last CRLF; "" on EOF or
  // after 10 s.
  std::string Reply() {
    std::string reply;
    for (;;) {
      const size_t nl = buffer_.find("\r\n");
      if (nl != std::string::npos) {
        const std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 2);
        if (!reply.empty()) reply += "\n";
        reply += line;
        if (line.size() < 4 || line[3] != '-') return reply;
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return reply;
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return reply;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  std::string Command(const std::string& line) {
    Send(line + "\r\n");
    return Reply();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string Code3(const std::string& reply) { return reply.substr(0, 3); }

class SmtpListenerTest : public ::testing::Test {
 protected:
  // Before the members the handler uses go away.
  void TearDown() override {
    if (listener_) listener_->Stop();
  }

  void StartListener(SmtpListenerOptions options = {}) {
    listener_ = std::make_unique<SmtpListener>(
        std::move(options),
        [this](const InboundMessage& m, const Result<std::vector<Feedback>>& parsed) {
          std::lock_guard<std::mutex> lock(mutex_);
          received_.push_back({m, parsed});
          arrived_.notify_all();
          return answer_;
        });
    ASSERT_TRUE(listener_->Start().ok());
    ASSERT_NE(listener_->port(), 0);
  }

  void Answer(Status status) {
    std::lock_guard<std::mutex> lock(mutex_);
    answer_ = std::move(status);
  }

  struct Received {
    InboundMessage message;
    Result<std::vector<Feedback>> parsed;
  };

  // Waits until `count` messages arrived (the handler runs on the listener's thread).
  std::vector<Received> WaitFor(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    arrived_.wait_for(lock, 10s, [&] { return received_.size() >= count; });
    return received_;
  }

  std::unique_ptr<SmtpListener> listener_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Received> received_;
  Status answer_;
};

// Runs a shell command; returns its exit status and, in `output`, what it printed.
int RunShell(const std::string& command, std::string& output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Have(const std::string& tool) {
  std::string ignored;
  return RunShell("command -v " + tool, ignored) == 0;
}

TEST_F(SmtpListenerTest, PythonSmtplibDeliversABounce) {
  if (!Have("python3")) GTEST_SKIP() << "python3 is not installed";
  StartListener();
  std::string output;
  const std::string dir = NUDGE_FEEDBACK_DIR;
  const int status =
      RunShell("python3 " + dir + "/smtp_send.py 127.0.0.1 " + std::to_string(listener_->port()) +
                   " '' bounces@acme.test " + dir + "/exim_text_bounce.eml",
               output);
  EXPECT_EQ(status, 0) << output;
  const auto received = WaitFor(1);
  ASSERT_EQ(received.size(), 1u);
  const InboundMessage& m = received[0].message;
  EXPECT_EQ(m.mail_from, "");  // the null sender of bounces
  EXPECT_EQ(m.rcpt_to, (std::vector<std::string>{"bounces@acme.test"}));
  EXPECT_EQ(m.helo, "client.example");
  EXPECT_EQ(m.remote_address.rfind("127.0.0.1:", 0), 0u);
  // Dot-stuffed by the client, unstuffed here.
  EXPECT_NE(m.data.find("\r\n. This line started with a dot in the original.\r\n"),
            std::string::npos);
  const auto& parsed = received[0].parsed;
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[1].recipient, "closed.box@legacy.example.com");
  EXPECT_EQ((*parsed)[1].status, "5.2.1");
  EXPECT_EQ((*parsed)[1].message_id, "01HS6Z9X8C7V6B5N4M3L2K1J0H.newsletter@acme.test");
}

TEST_F(SmtpListenerTest, CurlDeliversABounce) {
  if (!Have("curl")) GTEST_SKIP() << "curl is not installed";
  StartListener();
  std::string output;
  const std::string dir = NUDGE_FEEDBACK_DIR;
  const int status =
      RunShell("curl -sS --crlf --url smtp://127.0.0.1:" + std::to_string(listener_->port()) +
                   " --mail-from bounces@relay.example --mail-rcpt bounces+fred@acme.test -T " +
                   dir + "/qmail_bounce.eml",
               output);
  EXPECT_EQ(status, 0) << output;
  const auto received = WaitFor(1);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].message.rcpt_to, (std::vector<std::string>{"bounces+fred@acme.test"}));
  const auto& parsed = received[0].parsed;
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->front().kind, Feedback::Kind::kHardBounce);
  EXPECT_EQ(parsed->front().recipient, "fred@oldhost.example.net");
  EXPECT_EQ(parsed->front().status, "5.1.1");
  EXPECT_EQ(parsed->front().message_id, "01HSF0A1S2D3F4G5H6J7K8L9Z0.winback@acme.test");
}

TEST_F(SmtpListenerTest, ConversationAndSequenceErrors) {
  StartListener();
  Client c(listener_->port());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.Reply(), "220 localhost ESMTP nudge bounce intake");
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<>")), "503");  // HELO first
  EXPECT_EQ(Code3(c.Command("HELO")), "501");
  const std::string ehlo = c.Command("EHLO client.example");
  EXPECT_EQ(ehlo,
            "250-localhost\n250-PIPELINING\n250-SIZE 10485760\n250-8BITMIME\n"
            "250-ENHANCEDSTATUSCODES\n250 SMTPUTF8");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<a@example.com>")), "503");
  EXPECT_EQ(Code3(c.Command("DATA")), "503");
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<>")), "250");
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<>")), "503");  // nested
  EXPECT_EQ(Code3(c.Command("DATA")), "554");          // no recipients yet
  EXPECT_EQ(Code3(c.Command("RCPT TO:<>")), "501");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<bounces@acme.test>")), "250");
  EXPECT_EQ(Code3(c.Command("NOOP")), "250");
  EXPECT_EQ(Code3(c.Command("VRFY someone")), "252");
  EXPECT_EQ(Code3(c.Command("STARTTLS")), "502");
  EXPECT_EQ(Code3(c.Command("WHAT")), "500");
  EXPECT_EQ(Code3(c.Command("RSET")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<bounces@acme.test>")), "503");  // RSET ended it
  EXPECT_EQ(Code3(c.Command("quit")), "221");
  EXPECT_EQ(c.Reply(), "");  // closed
  EXPECT_TRUE(WaitFor(0).empty());
}

TEST_F(SmtpListenerTest, PipelinedCommandsBareLineFeedsAndDotUnstuffing) {
  StartListener();
  Client c(listener_->port());
  c.Reply();
  c.Command("EHLO x");
  c.Send(
      "MAIL FROM:<mailer-daemon@relay.example> SIZE=300 BODY=8BITMIME\r\n"
      "RCPT TO:<bounces@acme.test>\r\nRCPT TO:<fbl@acme.test>\r\nDATA\r\n");
  EXPECT_EQ(Code3(c.Reply()), "250");
  EXPECT_EQ(Code3(c.Reply()), "250");
  EXPECT_EQ(Code3(c.Reply()), "250");
  EXPECT_EQ(Code3(c.Reply()), "354");
  c.Send("Subject: test\n\n..leading dot\n.\r\n");
  EXPECT_EQ(c.Reply().substr(0, 24), "250 2.0.0 Ok: queued as ");
  const auto received = WaitFor(1);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].message.data, "Subject: test\r\n\r\n.leading dot\r\n");
  EXPECT_EQ(received[0].message.mail_from, "mailer-daemon@relay.example");
  EXPECT_EQ(received[0].message.rcpt_to.size(), 2u);
  ASSERT_FALSE(received[0].parsed);  // not a bounce, still handed over
  EXPECT_EQ(received[0].parsed.error().code(), Code::kInvalidArgument);

  // A second message on the same connection.
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<>")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<b@acme.test>")), "250");
  EXPECT_EQ(Code3(c.Command("DATA")), "354");
  EXPECT_EQ(Code3(c.Command("x\r\n.")), "250");
  EXPECT_EQ(WaitFor(2).size(), 2u);
}

TEST_F(SmtpListenerTest, HandlerFailureMeansRetryOrRefusal) {
  StartListener();
  Client c(listener_->port());
  c.Reply();
  c.Command("HELO x");
  auto send = [&] {
    c.Command("MAIL FROM:<>");
    c.Command("RCPT TO:<bounces@acme.test>");
    c.Command("DATA");
    return c.Command("Subject: x\r\n\r\nbody\r\n.");
  };
  Answer(Status::Unavailable("store\r\nis closing"));
  EXPECT_EQ(send(), "451 4.3.0 store is closing");
  Answer(Status::Invalid("not for us"));
  EXPECT_EQ(send(), "550 5.6.0 not for us");
  Answer(Status::Ok());
  EXPECT_EQ(Code3(send()), "250");
  EXPECT_EQ(WaitFor(3).size(), 3u);
}

TEST_F(SmtpListenerTest, SizeAndRecipientLimits) {
  SmtpListenerOptions options;
  options.max_message_bytes = 1000;
  options.max_recipients = 2;
  StartListener(options);
  Client c(listener_->port());
  c.Reply();
  EXPECT_NE(c.Command("EHLO x").find("250-SIZE 1000"), std::string::npos);
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<> SIZE=5000")), "552");
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<> SIZE=abc")), "501");
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<> SIZE=500")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<a@acme.test>")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<b@acme.test>")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<c@acme.test>")), "452");
  EXPECT_EQ(Code3(c.Command("DATA")), "354");
  std::string big;
  for (int i = 0; i < 100; ++i) big += std::string(70, 'x') + "\r\n";
  big += std::string(200000, 'y') + "\r\n";  // one very long line too
  EXPECT_EQ(c.Command(big + "."), "552 5.3.4 Error: message too large");
  // The session goes on.
  EXPECT_EQ(Code3(c.Command("MAIL FROM:<>")), "250");
  EXPECT_EQ(Code3(c.Command("RCPT TO:<a@acme.test>")), "250");
  EXPECT_EQ(Code3(c.Command("DATA")), "354");
  EXPECT_EQ(Code3(c.Command("small\r\n.")), "250");
  EXPECT_EQ(WaitFor(1).size(), 1u);
}

TEST_F(SmtpListenerTest, LongLinesAndTooManyErrors) {
  SmtpListenerOptions options;
  options.max_errors = 3;
  StartListener(options);
  Client c(listener_->port());
  c.Reply();
  EXPECT_EQ(c.Command("HELO " + std::string(10000, 'h')), "500 5.5.2 Error: line too long");
  EXPECT_EQ(Code3(c.Command("BOGUS")), "500");
  EXPECT_EQ(Code3(c.Command("BOGUS")), "500");
  EXPECT_EQ(c.Reply(), "421 4.7.0 localhost Error: too many errors");
  EXPECT_EQ(c.Reply(), "");
}

TEST_F(SmtpListenerTest, IdleSessionsTimeOut) {
  SmtpListenerOptions options;
  options.command_timeout = 200ms;
  StartListener(options);
  Client c(listener_->port());
  c.Reply();
  EXPECT_EQ(c.Reply(), "421 4.4.2 localhost Error: timeout exceeded");
}

TEST_F(SmtpListenerTest, StopClosesOpenSessions) {
  StartListener();
  Client c(listener_->port());
  c.Reply();
  c.Command("HELO x");
  c.Command("MAIL FROM:<>");
  listener_->Stop();
  EXPECT_EQ(c.Reply(), "421 4.3.2 localhost Service shutting down");
  Client after(listener_->port());
  EXPECT_FALSE(after.connected() && !after.Reply().empty());
  listener_->Stop();  // idempotent
}

TEST_F(SmtpListenerTest, BusyListenerSaysSo) {
  SmtpListenerOptions options;
  options.threads = 1;
  options.max_pending = 1;
  StartListener(options);
  Client first(listener_->port());
  EXPECT_EQ(Code3(first.Reply()), "220");  // holds the only session thread
  Client second(listener_->port());        // waits for a thread
  std::this_thread::sleep_for(200ms);
  Client third(listener_->port());
  EXPECT_EQ(third.Reply(), "421 4.3.2 localhost Too busy, try later");
  first.Command("QUIT");
  EXPECT_EQ(Code3(second.Reply()), "220");
}

TEST(SmtpListener, StartErrors) {
  auto handler = [](const InboundMessage&, const Result<std::vector<Feedback>>&) {
    return Status::Ok();
  };
  SmtpListenerOptions bad;
  bad.address = "localhost";  // a name, not an address
  SmtpListener a(bad, handler);
  EXPECT_EQ(a.Start().code(), Code::kInvalidArgument);

  SmtpListener b(SmtpListenerOptions{}, handler);
  ASSERT_TRUE(b.Start().ok());
  EXPECT_EQ(b.Start().code(), Code::kFailedPrecondition);
  SmtpListenerOptions taken;
  taken.port = b.port();
  SmtpListener c(taken, handler);
  EXPECT_EQ(c.Start().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace nudge::channel
