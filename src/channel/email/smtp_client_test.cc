// SmtpClient against a scripted fake relay on 127.0.0.1, for what a real server cannot show:
// that commands really are pipelined, the exact bytes on the wire, and misbehaving servers.
// Real relays (smtp-sink, Node's smtp-server) are used in tests/email/.
#include "channel/email/smtp_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "core/crypto.h"

namespace nudge::channel {
namespace {

// One accepted connection with line reading; every read gives up after 5 s.
class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Conn() { close(fd_); }
  void Send(const std::string& s) { (void)!write(fd_, s.data(), s.size()); }
  // The next line without CRLF; "<eof>" when the client closed or went quiet.
  std::string Line() {
    std::string s = Until("\r\n");
    return s == "<eof>" ? s : s.substr(0, s.size() - 2);
  }
  // Everything up to and including `end`.
  std::string Until(const std::string& end) {
    while (buf_.find(end) == std::string::npos) {
      char tmp[4096];
      const ssize_t n = read(fd_, tmp, sizeof tmp);
      if (n <= 0) return "<eof>";
      buf_.append(tmp, static_cast<size_t>(n));
    }
    const size_t at = buf_.find(end) + end.size();
    std::string out = buf_.substr(0, at);
    buf_.erase(0, at);
    return out;
  }

 private:
  int fd_;
  std::string buf_;
};

// Listens on an ephemeral port and runs `script` on the first connection, in a thread.
class FakeRelay {
 public:
  explicit FakeRelay(std::function<void(Conn&)> script) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 4);
    thread_ = std::thread([this, script] {
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      Conn conn(fd);
      script(conn);
    });
  }
  ~FakeRelay() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

RelayConfig Relay(int port) {
  RelayConfig r;
  r.name = "fake";
  r.host = "127.0.0.1";
  r.port = port;
  return r;
}

SmtpClientOptions Fast() {
  SmtpClientOptions o;
  o.helo_name = "client.test";
  o.timeouts.connect = 2000;
  o.timeouts.greeting = 2000;
  o.timeouts.command = 2000;
  o.timeouts.data = 2000;
  return o;
}

const char kEhlo[] =
    "250-fake.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

TEST(SmtpClient, PipelinesMailRcptDataAndReusesTheConnection) {
  std::vector<std::string> seen;
  std::string received;
  FakeRelay relay([&](Conn& c) {
    c.Send("220 fake.test ESMTP\r\n");
    seen.push_back(c.Line());
    c.Send(kEhlo);
    // No reply before all three commands are in: a client that waits for each reply stalls.
    for (int i = 0; i < 3; ++i) seen.push_back(c.Line());
    c.Send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    received = c.Until("\r\n.\r\n");
    c.Send("250 2.0.0 Ok: queued as 4BF2A1C0E\r\n");
    // Second message: the recipient is refused.
    for (int i = 0; i < 3; ++i) seen.push_back(c.Line());
    c.Send(
        "250 2.1.0 Ok\r\n550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n"
        "554 5.5.1 Error: no valid recipients\r\n");
    // Third: RSET comes first, in the same pipeline.
    for (int i = 0; i < 4; ++i) seen.push_back(c.Line());
    c.Send("250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
    c.Until("\r\n.\r\n");
    c.Send("250 2.0.0 Ok: queued as 5CC\r\n");
    seen.push_back(c.Line());
    c.Send("221 2.0.0 Bye\r\n");
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client) << client.error().ToString();
  EXPECT_TRUE((*client)->capabilities().pipelining);

  const std::string msg = "Subject: x\r\n\r\n.leading dot\r\n..two\r\nlast line without break";
  SendOutcome first = (*client)->Send("bounce@acme.test", "a@example.com", msg);
  EXPECT_TRUE(first.sent()) << first.ToString();
  EXPECT_EQ(first.code, 250);
  EXPECT_EQ(first.enhanced, "2.0.0");
  EXPECT_EQ(first.text, "Ok: queued as 4BF2A1C0E");
  EXPECT_EQ(received,
            "Subject: x\r\n\r\n..leading dot\r\n...two\r\nlast line without break\r\n.\r\n");

  SendOutcome second = (*client)->Send("bounce@acme.test", "nobody@example.com", msg);
  EXPECT_EQ(second.status, SendStatus::kPermanentFailure);
  EXPECT_EQ(second.code, 550);
  EXPECT_EQ(second.enhanced, "5.1.1");
  EXPECT_EQ(second.stage, SmtpStage::kRcpt);
  EXPECT_TRUE((*client)->usable());

  SendOutcome third = (*client)->Send("bounce@acme.test", "b@example.com", msg);
  EXPECT_TRUE(third.sent()) << third.ToString();
  EXPECT_EQ((*client)->messages_sent(), 2u);
  (*client)->Quit();

  const std::vector<std::string> want = {"EHLO client.test",
                                         "MAIL FROM:<bounce@acme.test>",
                                         "RCPT TO:<a@example.com>",
                                         "DATA",
                                         "MAIL FROM:<bounce@acme.test>",
                                         "RCPT TO:<nobody@example.com>",
                                         "DATA",
                                         "RSET",
                                         "MAIL FROM:<bounce@acme.test>",
                                         "RCPT TO:<b@example.com>",
                                         "DATA",
                                         "QUIT"};
  EXPECT_EQ(seen, want);
}

TEST(SmtpClient, FallsBackToHeloAndWaitsForEachReplyWithoutPipelining) {
  std::vector<std::string> seen;
  FakeRelay relay([&](Conn& c) {
    c.Send("220 old.test\r\n");
    seen.push_back(c.Line());
    c.Send("502 5.5.2 Error: command not recognized\r\n");
    seen.push_back(c.Line());
    c.Send("250 old.test\r\n");
    for (const char* reply : {"250 Ok\r\n", "250 Ok\r\n", "354 go\r\n"}) {
      seen.push_back(c.Line());
      c.Send(reply);
    }
    c.Until("\r\n.\r\n");
    c.Send("250 Ok: queued as 77\r\n");
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client) << client.error().ToString();
  EXPECT_FALSE((*client)->capabilities().esmtp);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", "Subject: x\r\n\r\nhi\r\n");
  EXPECT_TRUE(o.sent()) << o.ToString();
  EXPECT_EQ(o.text, "Ok: queued as 77");
  EXPECT_EQ(seen, (std::vector<std::string>{"EHLO client.test", "HELO client.test",
                                            "MAIL FROM:<a@acme.test>", "RCPT TO:<b@example.com>",
                                            "DATA"}));
}

TEST(SmtpClient, AuthPlainSendsTheCredentialsInOneLine) {
  std::string auth_line;
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send("250-x\r\n250 AUTH LOGIN PLAIN\r\n");
    auth_line = c.Line();
    c.Send("235 2.7.0 Authentication successful\r\n");
    c.Line();
  });
  RelayConfig r = Relay(relay.port());
  r.username = "user";
  r.password = "pass";
  auto client = SmtpClient::Connect(r, Fast());
  ASSERT_TRUE(client) << client.error().ToString();
  EXPECT_EQ(auth_line, "AUTH PLAIN " + core::Base64Encode(std::string("\0user\0pass", 10)));
  (*client)->Quit();
}

TEST(SmtpClient, RefusedAuthIsUnauthenticatedAndQuotesTheRelay) {
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send("250-x\r\n250 AUTH PLAIN\r\n");
    c.Line();
    c.Send("535 5.7.8 Error: authentication failed\r\n");
    c.Line();
  });
  RelayConfig r = Relay(relay.port());
  r.username = "user";
  r.password = "wrong";
  auto client = SmtpClient::Connect(r, Fast());
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), Code::kUnauthenticated);
  EXPECT_NE(client.error().message().find("535 5.7.8 Error: authentication failed"),
            std::string::npos)
      << client.error().message();
  EXPECT_EQ(client.error().message().find("wrong"), std::string::npos);
}

TEST(SmtpClient, GreetingTimeoutAndRefusedGreeting) {
  {
    FakeRelay silent([&](Conn& c) { c.Line(); });
    SmtpClientOptions o = Fast();
    o.timeouts.greeting = 200;
    auto client = SmtpClient::Connect(Relay(silent.port()), o);
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().code(), Code::kUnavailable);
    EXPECT_NE(client.error().message().find("timed out waiting"), std::string::npos)
        << client.error().message();
    EXPECT_NE(client.error().message().find("greeting"), std::string::npos);
  }
  {
    FakeRelay busy([&](Conn& c) { c.Send("421 4.3.2 Too busy, try later\r\n"); });
    auto client = SmtpClient::Connect(Relay(busy.port()), Fast());
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().code(), Code::kUnavailable);
    EXPECT_NE(client.error().message().find("421 4.3.2 Too busy"), std::string::npos);
  }
}

TEST(SmtpClient, StartTlsRequiredButNotOfferedIsRefused) {
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send(kEhlo);
    c.Line();
  });
  RelayConfig r = Relay(relay.port());
  r.tls = TlsMode::kStartTls;
  auto client = SmtpClient::Connect(r, Fast());
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(client.error().message().find("does not offer STARTTLS"), std::string::npos);
}

TEST(SmtpClient, MessageOverTheAdvertisedSizeIsNotSent) {
  std::string next;
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send("250-x\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
    next = c.Line();
    c.Send("221 bye\r\n");
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", std::string(500, 'x'));
  EXPECT_EQ(o.status, SendStatus::kPermanentFailure);
  EXPECT_EQ(o.code, 552);
  (*client)->Quit();
  EXPECT_EQ(next, "QUIT");  // nothing of the message went out
}

TEST(SmtpClient, LostConnectionAfterTheDataMayHaveDelivered) {
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send(kEhlo);
    for (int i = 0; i < 3; ++i) c.Line();
    c.Send("250 Ok\r\n250 Ok\r\n354 go\r\n");
    c.Until("\r\n.\r\n");
    // Hang up without answering the final dot.
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", "Subject: x\r\n\r\nhi\r\n");
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure);
  EXPECT_EQ(o.stage, SmtpStage::kDataEnd);
  EXPECT_EQ(o.code, 0);
  EXPECT_TRUE(o.maybe_delivered);
  EXPECT_FALSE((*client)->usable());
}

TEST(SmtpClient, A421ClosesTheSession) {
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send(kEhlo);
    for (int i = 0; i < 3; ++i) c.Line();
    c.Send("421 4.7.0 Too many messages, closing\r\n");
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", "Subject: x\r\n\r\nhi\r\n");
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure);
  EXPECT_EQ(o.code, 421);
  EXPECT_EQ(o.stage, SmtpStage::kMail);
  EXPECT_FALSE(o.maybe_delivered);
  EXPECT_FALSE((*client)->usable());
}

TEST(SmtpClient, GarbageFromTheServerIsATemporaryFailure) {
  FakeRelay relay([&](Conn& c) {
    c.Send("220 x\r\n");
    c.Line();
    c.Send(kEhlo);
    for (int i = 0; i < 3; ++i) c.Line();
    c.Send("HTTP/1.1 400 Bad Request\r\n");
  });
  auto client = SmtpClient::Connect(Relay(relay.port()), Fast());
  ASSERT_TRUE(client);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", "Subject: x\r\n\r\nhi\r\n");
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure);
  EXPECT_NE(o.text.find("not an SMTP reply"), std::string::npos) << o.text;
  EXPECT_FALSE((*client)->usable());
}

TEST(SmtpClient, ConnectionRefusedNamesTheRelay) {
  int port = 0;
  {
    FakeRelay closed([](Conn&) {});
    port = closed.port();
    // Connect once so the fake's thread ends, then the listener closes.
    auto c = SmtpClient::Connect(Relay(port), Fast());
  }
  auto client = SmtpClient::Connect(Relay(port), Fast());
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), Code::kUnavailable);
  EXPECT_NE(client.error().message().find("relay fake (127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << client.error().message();
}

TEST(DotStuffing, DoublesLeadingDotsAndNormalizesLineBreaks) {
  std::string out;
  AppendDotStuffed(out, ".a\n.b\r\nc.\r.\r\n..");
  EXPECT_EQ(out, "..a\r\n..b\r\nc.\r\n..\r\n...\r\n");
  out.clear();
  AppendDotStuffed(out, "no break");
  EXPECT_EQ(out, "no break\r\n");
  out.clear();
  AppendDotStuffed(out, ".");
  EXPECT_EQ(out, "..\r\n");
}

}  // namespace
}  // namespace nudge::channel
