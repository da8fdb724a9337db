// End-to-end tests of the email transport against real servers that the tests start
// themselves on 127.0.0.1: Postfix's smtp-sink (scripted refusals: -f, -r, -Q, -w) and a
// recording relay on Node's smtp-server (tests/email/relay.mjs) whose messages mailparser reads
// back; DKIM signatures are checked by python3-dkim (tests/email/dkim_verify.py).
//
// Run through tests/email/run.sh BUILD_DIR, which provides the Node modules. Assertions are on
// outcomes, counts and order, never on how long something took; every wait has a generous
// upper bound so a broken build fails instead of hanging.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "channel/email/dkim.h"
#include "channel/email/message.h"
#include "channel/email/retry.h"
#include "channel/email/sender.h"
#include "channel/email/smtp_client.h"

namespace nudge::channel {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kSource = NUDGE_SOURCE_DIR;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child process (its own process group), killed when this object goes.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log_file, bool pipe_stdout = false) {
    int out[2] = {-1, -1};
    if (pipe_stdout && pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setpgid(0, 0);
      const int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, 0);
      const int log = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(pipe_stdout ? out[1] : log, 1);
      dup2(log, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    if (pipe_stdout) {
      close(out[1]);
      stdout_ = out[0];
    }
  }
  ~Process() {
    if (pid_ > 0) {
      kill(-pid_, SIGTERM);
      for (int i = 0; i < 100; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (pid_ > 0) {
        kill(-pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (stdout_ >= 0) close(stdout_);
  }
  // The first line the process prints, within timeout_ms; "" if none.
  std::string ReadLine(int timeout_ms) {
    std::string line;
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < end) {
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (read(stdout_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line += c;
    }
    return "";
  }
  // Waits for the process to end (bounded); its exit status, or -1.
  int Wait(int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    int status = 0;
    while (Clock::now() < end) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
};

// Runs a command to completion; its exit status.
int RunCommand(std::vector<std::string> argv, const std::string& log_file, int timeout_ms = 60000) {
  Process p(std::move(argv), log_file);
  return p.Wait(timeout_ms);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

class EmailE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nudge-email-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    processes_.clear();
    if (!HasFailure())
      fs::remove_all(dir_);
    else
      std::cerr << "kept " << dir_ << " (server logs, received messages)\n";
  }

  // Starts smtp-sink with extra options; its port.
  int StartSink(std::vector<std::string> options) {
    const int port = FreePort();
    std::vector<std::string> argv = {"/usr/sbin/smtp-sink"};
    if (geteuid() == 0) {
      argv.push_back("-u");
      argv.push_back("root");
    }
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("127.0.0.1:" + std::to_string(port));
    argv.push_back("100");
    processes_.push_back(std::make_unique<Process>(argv, dir_ + "/sink.log"));
    for (int i = 0; i < 400 && !Listening(port); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    EXPECT_TRUE(Listening(port)) << "smtp-sink did not start; see " << dir_ << "/sink.log";
    return port;
  }

  // Starts the Node relay; its port. Messages land in dir_/<name>/.
  int StartRelay(const std::string& name, json config) {
    config["dir"] = dir_ + "/" + name;
    processes_.push_back(std::make_unique<Process>(
        std::vector<std::string>{"node", kSource + "/tests/email/relay.mjs", config.dump()},
        dir_ + "/" + name + ".log", /*pipe_stdout=*/true));
    const std::string line = processes_.back()->ReadLine(30000);
    if (line.empty()) {
      ADD_FAILURE() << "the Node relay did not start: " << Slurp(dir_ + "/" + name + ".log");
      return 0;
    }
    return json::parse(line)["port"].get<int>();
  }

  json Received(const std::string& relay, int n) {
    return json::parse(Slurp(dir_ + "/" + relay + "/" + std::to_string(n) + ".json"));
  }
  std::string Raw(const std::string& relay, int n) {
    return Slurp(dir_ + "/" + relay + "/" + std::to_string(n) + ".eml");
  }
  json RelayStats(const std::string& relay) {
    return json::parse(Slurp(dir_ + "/" + relay + "/stats.json"));
  }

  // A self-signed certificate for 127.0.0.1 and localhost: {cert, key}.
  std::pair<std::string, std::string> MakeCertificate() {
    const std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
    EXPECT_EQ(RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                          key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost"},
                         dir_ + "/openssl.log"),
              0);
    return {cert, key};
  }

  std::string dir_;
  std::vector<std::unique_ptr<Process>> processes_;
};

RelayConfig Relay(const std::string& name, int port) {
  RelayConfig r;
  r.name = name;
  r.host = "127.0.0.1";
  r.port = port;
  r.pool = 1;
  r.transactional_reserved = 0;
  return r;
}

SenderOptions Options(std::vector<RelayConfig> relays) {
  SenderOptions o;
  o.relays = std::move(relays);
  o.helo_name = "nudge.test";
  o.timeouts.connect = 5000;
  o.timeouts.greeting = 10000;
  o.timeouts.command = 10000;
  o.timeouts.data = 20000;
  return o;
}

// Collects callbacks; Wait blocks until n outcomes arrived (at most a minute).
class Outcomes {
 public:
  SendCallback Callback(std::string tag = "") {
    return [this, tag](const SendOutcome& o) {
      std::lock_guard lock(mu_);
      list_.push_back({tag, o, Clock::now()});
      cv_.notify_all();
    };
  }
  bool Wait(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return list_.size() >= n; });
  }
  struct Entry {
    std::string tag;
    SendOutcome outcome;
    Clock::time_point at;
  };
  std::vector<Entry> list() {
    std::lock_guard lock(mu_);
    return list_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> list_;
};

core::VirtualClock kClock(1772701623000);  // 2026-03-05T09:07:03Z

std::string Message(const std::string& to, const std::string& subject = "Hello",
                    const std::string& id = "") {
  EmailContent c;
  c.from = {"Acme", "hello@acme.test"};
  c.to = {"", to};
  c.subject = subject;
  c.text = "Hi,\nthis is for " + to + ".\n";
  c.message_id =
      (id.empty() ? std::to_string(std::hash<std::string>()(to + subject)) : id) + "@acme.test";
  return *BuildMessage(c, kClock);
}

// ---------------------------------------------------------------------------------------------
// Postfix's smtp-sink

TEST_F(EmailE2E, SinkTakesManyMessagesOverOnePooledConnection) {
  const int port = StartSink({});
  core::MetricsRegistry metrics;
  SenderOptions options = Options({Relay("sink", port)});
  options.metrics = &metrics;
  auto sender = EmailSender::Create(options);
  ASSERT_TRUE(sender) << sender.error().ToString();
  Outcomes outcomes;
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i) {
    const std::string to = "user" + std::to_string(i) + "@example.com";
    ASSERT_TRUE((*sender)
                    ->Submit("bounce@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback())
                    .ok());
  }
  ASSERT_TRUE(outcomes.Wait(kCount));
  for (const auto& e : outcomes.list()) {
    EXPECT_TRUE(e.outcome.sent()) << e.outcome.ToString();
    EXPECT_EQ(e.outcome.code, 250);
    EXPECT_EQ(e.outcome.relay, "sink");
  }
  const SenderStats stats = (*sender)->Stats();
  EXPECT_EQ(stats.relays[0].sent, static_cast<uint64_t>(kCount));
  EXPECT_EQ(stats.relays[0].connections_opened, 1u);
  const std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("nudge_email_sends_total{relay=\"sink\",outcome=\"sent\"} 200"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("nudge_email_connections{relay=\"sink\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("nudge_email_queue_depth 0"), std::string::npos) << text;
}

TEST_F(EmailE2E, SinkRefusalsBecomeTemporaryOrPermanentOutcomes) {
  const int hard = StartSink({"-f", "RCPT"});  // 5xx to RCPT
  const int soft = StartSink({"-r", "RCPT"});  // 4xx to RCPT
  {
    auto client = SmtpClient::Connect(Relay("hard", hard), SmtpClientOptions{"nudge.test", {}});
    ASSERT_TRUE(client) << client.error().ToString();
    SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
    EXPECT_EQ(o.status, SendStatus::kPermanentFailure) << o.ToString();
    EXPECT_EQ(o.code / 100, 5);
    EXPECT_EQ(o.enhanced.substr(0, 2), "5.");
    EXPECT_EQ(o.stage, SmtpStage::kRcpt);
    EXPECT_TRUE((*client)->usable());
    // The session goes on after the refusal (RSET, then the next message).
    SendOutcome again = (*client)->Send("a@acme.test", "c@example.com", Message("c@example.com"));
    EXPECT_EQ(again.status, SendStatus::kPermanentFailure);
  }
  auto sender = EmailSender::Create(Options({Relay("soft", soft)}));
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  ASSERT_TRUE((*sender)
                  ->Submit("a@acme.test", "b@example.com", Message("b@example.com"), Lane::kBulk,
                           outcomes.Callback())
                  .ok());
  ASSERT_TRUE(outcomes.Wait(1));
  const SendOutcome o = outcomes.list()[0].outcome;
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure) << o.ToString();
  EXPECT_EQ(o.code / 100, 4);
  EXPECT_EQ(o.attempts, 1);  // a 4xx about the message is the caller's to retry
  EXPECT_EQ((*sender)->Stats().retried, 0u);
}

TEST_F(EmailE2E, A421FromTheRelayIsRetriedOnANewConnectionABoundedNumberOfTimes) {
  const int port = StartSink({"-Q", "RCPT"});  // 421 and hang up after RCPT, every time
  SenderOptions options = Options({Relay("sink", port)});
  options.max_attempts = 3;
  auto sender = EmailSender::Create(options);
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  ASSERT_TRUE((*sender)
                  ->Submit("a@acme.test", "b@example.com", Message("b@example.com"), Lane::kBulk,
                           outcomes.Callback())
                  .ok());
  ASSERT_TRUE(outcomes.Wait(1));
  const SendOutcome o = outcomes.list()[0].outcome;
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure) << o.ToString();
  EXPECT_EQ(o.code, 421);
  EXPECT_EQ(o.attempts, 3);
  const SenderStats stats = (*sender)->Stats();
  EXPECT_EQ(stats.retried, 2u);
  EXPECT_EQ(stats.relays[0].connections_opened, 3u);
}

TEST_F(EmailE2E, HeloWhenTheRelayRefusesEhlo) {
  const int port = StartSink({"-f", "EHLO"});
  auto client = SmtpClient::Connect(Relay("old", port), SmtpClientOptions{"nudge.test", {}});
  ASSERT_TRUE(client) << client.error().ToString();
  EXPECT_FALSE((*client)->capabilities().esmtp);
  EXPECT_FALSE((*client)->capabilities().pipelining);
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
  EXPECT_TRUE(o.sent()) << o.ToString();
}

TEST_F(EmailE2E, ASlowReplyTimesOut) {
  const int port = StartSink({"-w", "5"});  // waits 5 s before answering DATA
  SmtpClientOptions options{"nudge.test", {}};
  options.timeouts.command = 300;
  auto client = SmtpClient::Connect(Relay("slow", port), options);
  ASSERT_TRUE(client) << client.error().ToString();
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure);
  EXPECT_EQ(o.code, 0);
  EXPECT_NE(o.text.find("timed out"), std::string::npos) << o.text;
  EXPECT_FALSE((*client)->usable());
}

// ---------------------------------------------------------------------------------------------
// The Node relay: what a real parser makes of the messages

TEST_F(EmailE2E, MailparserReadsBackTheMimeStructureAndUtf8Headers) {
  const int port = StartRelay("relay", {});
  EmailContent c;
  c.from = {"Café Zürich – Ünïcode", "hello@acme.test"};
  c.to = {"Jürgen Müller", "juergen@example.de"};
  c.reply_to = Mailbox{"Support, Acme", "support@acme.test"};
  c.subject = "Grüße aus München: 20 % Rabatt für dich, Jürgen – nur diese Woche 🎉";
  c.preheader = "Your first week, in short";
  c.text = "Hallo Jürgen,\n.a line starting with a dot\n..and two\n\nPreis = 10 €\n" +
           std::string(300, 'x') + "\n";
  c.html = "<html><body><p>Hallo J&uuml;rgen, <b>willkommen</b>!</p>" + std::string(2000, 'y') +
           "</body></html>";
  c.message_id = "m-42.journey-welcome@acme.test";
  c.headers = {{"List-Unsubscribe", "<https://acme.test/u/tok42>, <mailto:unsub+tok42@acme.test>"},
               {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
               {"Feedback-ID", "welcome:journey-1:acme"}};
  auto message = BuildMessage(c, kClock);
  ASSERT_TRUE(message) << message.error().ToString();
  auto client = SmtpClient::Connect(Relay("relay", port), SmtpClientOptions{"nudge.test", {}});
  ASSERT_TRUE(client) << client.error().ToString();
  SendOutcome o = (*client)->Send("bounce+42@acme.test", "juergen@example.de", *message);
  ASSERT_TRUE(o.sent()) << o.ToString();
  EXPECT_EQ(o.text, "Ok: queued as Q1");

  // Byte for byte what we built: dot-stuffing undone by the server, nothing lost or added.
  EXPECT_EQ(Raw("relay", 1), *message);
  const json got = Received("relay", 1);
  EXPECT_EQ(got["mail_from"], "bounce+42@acme.test");
  EXPECT_EQ(got["subject"], c.subject);
  EXPECT_EQ(got["from"][0]["name"], c.from.name);
  EXPECT_EQ(got["from"][0]["address"], "hello@acme.test");
  EXPECT_EQ(got["to"][0]["name"], "Jürgen Müller");
  EXPECT_EQ(got["reply_to"][0]["name"], "Support, Acme");
  EXPECT_EQ(got["message_id"], "<m-42.journey-welcome@acme.test>");
  EXPECT_EQ(got["date"], "2026-03-05T09:07:03.000Z");
  EXPECT_EQ(got["content_type"], "multipart/alternative");
  EXPECT_EQ(got["text"], "Hallo Jürgen,\n.a line starting with a dot\n..and two\n\nPreis = 10 €\n" +
                             std::string(300, 'x'));
  const std::string html = got["html"];
  EXPECT_NE(html.find("<p>Hallo J&uuml;rgen, <b>willkommen</b>!</p>" + std::string(2000, 'y')),
            std::string::npos);
  EXPECT_LT(html.find("Your first week, in short"), html.find("<p>Hallo"));
  EXPECT_NE(std::string(got["list_unsubscribe"]).find("<https://acme.test/u/tok42>"),
            std::string::npos);
  EXPECT_EQ(got["list_unsubscribe_post"], "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
  EXPECT_EQ(got["feedback_id"], "Feedback-ID: welcome:journey-1:acme");
}

TEST_F(EmailE2E, DkimSignatureVerifiesWithAnIndependentVerifier) {
  const std::string key = dir_ + "/dkim.pem";
  ASSERT_EQ(RunCommand({"openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", key},
                       dir_ + "/openssl.log"),
            0);
  auto signer = DkimSigner::FromConfig({"acme.test", "s1", key});
  ASSERT_TRUE(signer) << signer.error().ToString();
  const std::string txt = dir_ + "/txt";
  std::ofstream(txt) << (*signer)->PublicKeyRecord();

  const int port = StartRelay("relay", {});
  EmailContent c;
  c.from = {"Acme Ünïcode", "hello@acme.test"};
  c.to = {"Ann", "ann@example.com"};
  c.subject = "Your receipt – order #1042, with a subject long enough to be folded in two";
  c.text = "Thanks!\n.dot-leading line\n";
  c.html = "<p>Thanks!</p>";
  c.message_id = "r-1042@acme.test";
  c.headers = {{"List-Unsubscribe", "<https://acme.test/u/1>, <mailto:u@acme.test>"},
               {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"}};
  std::string message = *BuildMessage(c, kClock);
  ASSERT_TRUE((*signer)->Sign(message).ok());
  auto sender = EmailSender::Create(Options({Relay("relay", port)}));
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  ASSERT_TRUE((*sender)
                  ->Submit("bounce@acme.test", "ann@example.com", message, Lane::kTransactional,
                           outcomes.Callback())
                  .ok());
  ASSERT_TRUE(outcomes.Wait(1));
  ASSERT_TRUE(outcomes.list()[0].outcome.sent());

  // Verify the message as the relay received it.
  const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string verify = kSource + "/tests/email/dkim_verify.py";
  const std::string shell = "'" + python + "' '" + verify + "' '" + txt + "' < '" + dir_ +
                            "/relay/1.eml' > '" + dir_ + "/verify.json' 2>>'" + dir_ +
                            "/verify.log'";
  ASSERT_EQ(RunCommand({"sh", "-c", shell}, dir_ + "/verify.log"), 0)
      << Slurp(dir_ + "/verify.json") << Slurp(dir_ + "/verify.log");
  const json result = json::parse(Slurp(dir_ + "/verify.json"));
  EXPECT_EQ(result["ok"], true);
  EXPECT_EQ(result["queried"], "s1._domainkey.acme.test.");
  EXPECT_EQ(result["a"], "rsa-sha256");
  EXPECT_EQ(result["c"], "relaxed/relaxed");
  for (const char* h : {"from", "to", "subject", "date", "message-id", "mime-version",
                        "content-type", "list-unsubscribe", "list-unsubscribe-post"})
    EXPECT_NE(std::find(result["h"].begin(), result["h"].end(), h), result["h"].end()) << h;

  // The verifier is not a rubber stamp: a changed recipient name fails.
  std::string tampered = Raw("relay", 1);
  const size_t at = tampered.find("\r\nTo: Ann <");
  ASSERT_NE(at, std::string::npos);
  tampered.replace(at, 10, "\r\nTo: Bob <");
  std::ofstream(dir_ + "/tampered.eml", std::ios::binary) << tampered;
  const std::string shell2 = "'" + python + "' '" + verify + "' '" + txt + "' < '" + dir_ +
                             "/tampered.eml' > /dev/null 2>&1";
  EXPECT_EQ(RunCommand({"sh", "-c", shell2}, dir_ + "/verify.log"), 1);
}

TEST_F(EmailE2E, ManyMessagesShareOnePipelinedSession) {
  const int port = StartRelay("relay", {});
  auto sender = EmailSender::Create(Options({Relay("relay", port)}));
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  constexpr int kCount = 40;
  for (int i = 0; i < kCount; ++i) {
    const std::string to = "u" + std::to_string(i) + "@example.com";
    ASSERT_TRUE((*sender)
                    ->Submit("bounce@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback())
                    .ok());
  }
  ASSERT_TRUE(outcomes.Wait(kCount));
  for (const auto& e : outcomes.list()) EXPECT_TRUE(e.outcome.sent()) << e.outcome.ToString();
  const json stats = RelayStats("relay");
  EXPECT_EQ(stats["sessions"], 1);
  EXPECT_EQ(stats["received"], kCount);
  const std::string session = Received("relay", 1)["session"];
  for (int n = 2; n <= kCount; ++n) EXPECT_EQ(Received("relay", n)["session"], session);
  // One domain, one connection: submission order is kept.
  for (int n = 1; n <= kCount; ++n)
    EXPECT_EQ(stats["order"][n - 1], "u" + std::to_string(n - 1) + "@example.com");
}

TEST_F(EmailE2E, AuthPlainAndLogin) {
  const int port = StartRelay(
      "relay", {{"auth", {{"user", "acme"}, {"pass", "s3cret"}, {"methods", {"PLAIN", "LOGIN"}}}}});
  for (const char* mechanism : {"plain", "login"}) {
    RelayConfig r = Relay("relay", port);
    r.username = "acme";
    r.password = "s3cret";
    r.auth_mechanism = mechanism;
    auto client = SmtpClient::Connect(r, SmtpClientOptions{"nudge.test", {}});
    ASSERT_TRUE(client) << client.error().ToString();
    SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
    EXPECT_TRUE(o.sent()) << o.ToString();
    (*client)->Quit();
  }
  EXPECT_EQ(Received("relay", 1)["auth_method"], "PLAIN");
  EXPECT_EQ(Received("relay", 1)["user"], "acme");
  EXPECT_EQ(Received("relay", 2)["auth_method"], "LOGIN");

  RelayConfig wrong = Relay("relay", port);
  wrong.username = "acme";
  wrong.password = "guess";
  auto refused = SmtpClient::Connect(wrong, SmtpClientOptions{"nudge.test", {}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kUnauthenticated);
  EXPECT_NE(refused.error().message().find("535"), std::string::npos);
  // Without credentials the relay refuses the mail itself.
  auto anonymous = SmtpClient::Connect(Relay("relay", port), SmtpClientOptions{"nudge.test", {}});
  ASSERT_TRUE(anonymous);
  SendOutcome o = (*anonymous)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
  EXPECT_EQ(o.status, SendStatus::kPermanentFailure);
  EXPECT_EQ(o.code, 530);
}

TEST_F(EmailE2E, StartTlsAndImplicitTlsWithCertificateChecks) {
  const auto [cert, key] = MakeCertificate();
  const int starttls = StartRelay("starttls", {{"starttls", true}, {"cert", cert}, {"key", key}});
  const int implicit = StartRelay("implicit", {{"secure", true}, {"cert", cert}, {"key", key}});

  RelayConfig a = Relay("starttls", starttls);
  a.tls = TlsMode::kStartTls;
  a.ca_file = cert;  // verify against the self-signed certificate
  RelayConfig b = Relay("implicit", implicit);
  b.tls = TlsMode::kImplicit;
  b.ca_file = cert;
  for (const RelayConfig& r : {a, b}) {
    auto client = SmtpClient::Connect(r, SmtpClientOptions{"nudge.test", {}});
    ASSERT_TRUE(client) << client.error().ToString();
    EXPECT_TRUE((*client)->tls_active());
    for (int i = 0; i < 3; ++i) {
      SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
      EXPECT_TRUE(o.sent()) << o.ToString();
    }
    (*client)->Quit();
  }
  EXPECT_EQ(Received("starttls", 1)["secure"], true);
  EXPECT_EQ(Received("implicit", 3)["secure"], true);

  // The system's roots do not know a self-signed certificate.
  RelayConfig untrusted = a;
  untrusted.ca_file.clear();
  auto refused = SmtpClient::Connect(untrusted, SmtpClientOptions{"nudge.test", {}});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("certificate verification failed"), std::string::npos)
      << refused.error().message();
  // Verification off (tests, private networks) accepts it.
  untrusted.tls_verify = false;
  EXPECT_TRUE(SmtpClient::Connect(untrusted, SmtpClientOptions{"nudge.test", {}}));
  // The certificate also names localhost: connecting by that name passes the name check.
  RelayConfig other_name = b;
  other_name.host = "localhost";
  EXPECT_TRUE(SmtpClient::Connect(other_name, SmtpClientOptions{"nudge.test", {}}));
}

TEST_F(EmailE2E, RetriesUntilTheRelayAcceptsAndThePolicyBacksOff) {
  const int port = StartRelay(
      "relay", {{"rules",
                 {{"flaky@retry.test", {{"code", 421}, {"times", 2}, {"message", "busy"}}},
                  {"later@retry.test", {{"code", 451}, {"times", 2}, {"message", "greylisted"}}},
                  {"nobody@retry.test", {{"code", 550}, {"message", "no such user"}}}}}});
  SenderOptions options = Options({Relay("relay", port)});
  options.max_attempts = 3;
  auto sender = EmailSender::Create(options);
  ASSERT_TRUE(sender);

  // 421 closes the session: the sender reconnects and tries again by itself.
  Outcomes first;
  ASSERT_TRUE((*sender)
                  ->Submit("a@acme.test", "flaky@retry.test", Message("flaky@retry.test"),
                           Lane::kBulk, first.Callback())
                  .ok());
  ASSERT_TRUE(first.Wait(1));
  EXPECT_TRUE(first.list()[0].outcome.sent()) << first.list()[0].outcome.ToString();
  EXPECT_EQ(first.list()[0].outcome.attempts, 3);
  EXPECT_EQ(RelayStats("relay")["attempts"]["flaky@retry.test"], 3);

  // 451 is about the message: reported, and the caller's RetryPolicy schedules the next try
  // (on a virtual clock here; the outbox would persist `at`).
  RetryPolicy policy(RetryOptions{.initial_delay = 60'000, .multiplier = 2, .jitter = 0.2});
  core::Millis now = 1'000'000, first_try = now;
  std::vector<core::Millis> delays;
  SendOutcome last;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    Outcomes o;
    ASSERT_TRUE((*sender)
                    ->Submit("a@acme.test", "later@retry.test", Message("later@retry.test"),
                             Lane::kBulk, o.Callback())
                    .ok());
    ASSERT_TRUE(o.Wait(1));
    last = o.list()[0].outcome;
    const RetryDecision d = policy.Decide(last, attempt, first_try, now, 0.5);
    if (!d.retry) break;
    EXPECT_EQ(last.code, 451);
    delays.push_back(d.at - now);
    now = d.at;
  }
  EXPECT_TRUE(last.sent()) << last.ToString();
  EXPECT_EQ(delays, (std::vector<core::Millis>{60'000, 120'000}));
  EXPECT_EQ(RelayStats("relay")["attempts"]["later@retry.test"], 2 + 1);

  // 550 is final.
  Outcomes bounce;
  ASSERT_TRUE((*sender)
                  ->Submit("a@acme.test", "nobody@retry.test", Message("nobody@retry.test"),
                           Lane::kBulk, bounce.Callback())
                  .ok());
  ASSERT_TRUE(bounce.Wait(1));
  const SendOutcome b = bounce.list()[0].outcome;
  EXPECT_EQ(b.status, SendStatus::kPermanentFailure);
  EXPECT_EQ(b.code, 550);
  EXPECT_NE(b.text.find("no such user"), std::string::npos);
  EXPECT_FALSE(policy.Decide(b, 1, now, now, 0.5).retry);
}

TEST_F(EmailE2E, FailsOverToTheNextRelayWhenTheFirstIsDownOrRefuses) {
  const int backup_port = StartRelay("backup", {});
  const int refusing = StartSink({"-Q", "CONNECT"});  // 421 greeting, then hang up
  const int nothing = FreePort();                     // no one listens here
  for (const int primary_port : {nothing, refusing}) {
    SenderOptions options = Options({Relay("primary", primary_port), Relay("backup", backup_port)});
    auto sender = EmailSender::Create(options);
    ASSERT_TRUE(sender);
    Outcomes outcomes;
    for (int i = 0; i < 10; ++i) {
      const std::string to = "f" + std::to_string(i) + "@example.com";
      ASSERT_TRUE(
          (*sender)->Submit("a@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback()).ok());
    }
    ASSERT_TRUE(outcomes.Wait(10));
    for (const auto& e : outcomes.list()) {
      EXPECT_TRUE(e.outcome.sent()) << e.outcome.ToString();
      EXPECT_EQ(e.outcome.relay, "backup");
    }
    const SenderStats stats = (*sender)->Stats();
    EXPECT_GE(stats.relays[0].connect_failures, 1u);
    EXPECT_EQ(stats.relays[0].sent, 0u);
    EXPECT_EQ(stats.relays[1].sent, 10u);
    if (primary_port == refusing) {
      EXPECT_NE(stats.relays[0].last_error.find("421"), std::string::npos)
          << stats.relays[0].last_error;
    }
  }
  EXPECT_EQ(RelayStats("backup")["received"], 20);
}

TEST_F(EmailE2E, EveryRelayDownFailsTheMessageAsTemporary) {
  SenderOptions options = Options({Relay("a", FreePort()), Relay("b", FreePort())});
  auto sender = EmailSender::Create(options);
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  ASSERT_TRUE((*sender)
                  ->Submit("a@acme.test", "x@example.com", Message("x@example.com"), Lane::kBulk,
                           outcomes.Callback())
                  .ok());
  ASSERT_TRUE(outcomes.Wait(1));
  const SendOutcome o = outcomes.list()[0].outcome;
  EXPECT_EQ(o.status, SendStatus::kTemporaryFailure);
  EXPECT_EQ(o.stage, SmtpStage::kConnect);
  EXPECT_NE(o.text.find("Connection refused"), std::string::npos) << o.text;
  // Until a relay's pause is over, new mail is refused at once instead of queued.
  const Status s = (*sender)->Submit("a@acme.test", "y@example.com", Message("y@example.com"),
                                     Lane::kBulk, outcomes.Callback());
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("every relay is down"), std::string::npos);
}

TEST_F(EmailE2E, PerDomainConcurrencyIsCapped) {
  const int port = StartRelay("relay", {{"delay_ms", {{"a.test", 150}, {"b.test", 150}}}});
  RelayConfig r = Relay("relay", port);
  r.pool = 6;
  SenderOptions options = Options({r});
  options.domain_concurrency = 2;
  auto sender = EmailSender::Create(options);
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  for (int i = 0; i < 12; ++i) {
    for (const char* domain : {"a.test", "b.test"}) {
      const std::string to = "u" + std::to_string(i) + "@" + domain;
      ASSERT_TRUE(
          (*sender)->Submit("a@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback()).ok());
    }
  }
  ASSERT_TRUE(outcomes.Wait(24));
  for (const auto& e : outcomes.list()) EXPECT_TRUE(e.outcome.sent()) << e.outcome.ToString();
  const json stats = RelayStats("relay");
  EXPECT_EQ(stats["received"], 24);
  EXPECT_LE(stats["max_in_flight"]["a.test"].get<int>(), 2);
  EXPECT_LE(stats["max_in_flight"]["b.test"].get<int>(), 2);
}

TEST_F(EmailE2E, RelayRateLimitSpacesTheMessages) {
  const int port = StartSink({});
  RelayConfig r = Relay("sink", port);
  r.pool = 3;
  r.rate = 5;  // one every 200 ms
  auto sender = EmailSender::Create(Options({r}));
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  const auto start = Clock::now();
  constexpr int kCount = 6;
  for (int i = 0; i < kCount; ++i) {
    const std::string to = "r" + std::to_string(i) + "@example.com";
    ASSERT_TRUE(
        (*sender)->Submit("a@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback()).ok());
  }
  ASSERT_TRUE(outcomes.Wait(kCount));
  // Whatever the machine's load, the k-th message cannot have been started (so cannot have
  // been answered) before k-1 intervals passed: a count check, not a speed check.
  std::vector<Clock::time_point> done;
  for (const auto& e : outcomes.list()) done.push_back(e.at);
  std::sort(done.begin(), done.end());
  for (int k = 0; k < kCount; ++k) {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(done[k] - start).count();
    EXPECT_GE(elapsed, k * 200 - 1) << "message " << k + 1 << " of " << kCount;
  }
}

TEST_F(EmailE2E, TransactionalMailOvertakesASaturatedBulkLane) {
  const int port = StartRelay("relay", {{"delay_ms", {{"bulk.test", 300}}}});
  for (const int reserved : {1, 0}) {
    RelayConfig r = Relay("relay", port);
    r.pool = reserved + 1;  // one connection for bulk, and one reserved or none
    r.transactional_reserved = reserved;
    auto sender = EmailSender::Create(Options({r}));
    ASSERT_TRUE(sender);
    Outcomes outcomes;
    for (int i = 0; i < 6; ++i) {
      const std::string to =
          "b" + std::to_string(i) + "-" + std::to_string(reserved) + "@bulk.test";
      ASSERT_TRUE(
          (*sender)
              ->Submit("a@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback("bulk"))
              .ok());
    }
    const std::string tx = "receipt-" + std::to_string(reserved) + "@tx.test";
    ASSERT_TRUE(
        (*sender)
            ->Submit("a@acme.test", tx, Message(tx), Lane::kTransactional, outcomes.Callback("tx"))
            .ok());
    ASSERT_TRUE(outcomes.Wait(7));
    // At most the one bulk message already being written got through before the receipt.
    const auto list = outcomes.list();
    size_t tx_index = 0;
    while (tx_index < list.size() && list[tx_index].tag != "tx") ++tx_index;
    ASSERT_LT(tx_index, list.size());
    EXPECT_TRUE(list[tx_index].outcome.sent());
    EXPECT_LE(tx_index, 1u) << "reserved=" << reserved;
  }
  const json stats = RelayStats("relay");
  std::vector<std::string> order = stats["order"];
  for (const char* tx : {"receipt-1@tx.test", "receipt-0@tx.test"}) {
    const size_t pos = std::find(order.begin(), order.end(), tx) - order.begin();
    EXPECT_LT(pos, order.size());
  }
}

TEST_F(EmailE2E, MessagesOverTheRelaySizeLimitAreRefusedBeforeSending) {
  const int port = StartRelay("relay", {{"size", 2000}});
  auto client = SmtpClient::Connect(Relay("relay", port), SmtpClientOptions{"nudge.test", {}});
  ASSERT_TRUE(client) << client.error().ToString();
  ASSERT_TRUE((*client)->capabilities().size);
  EXPECT_EQ(*(*client)->capabilities().size, 2000u);
  EmailContent c;
  c.from = {"", "a@acme.test"};
  c.to = {"", "b@example.com"};
  c.subject = "big";
  c.text = std::string(5000, 'z');
  c.message_id = "big@acme.test";
  SendOutcome o = (*client)->Send("a@acme.test", "b@example.com", *BuildMessage(c, kClock));
  EXPECT_EQ(o.status, SendStatus::kPermanentFailure);
  EXPECT_EQ(o.code, 552);
  EXPECT_TRUE((*client)->usable());
  SendOutcome small = (*client)->Send("a@acme.test", "b@example.com", Message("b@example.com"));
  EXPECT_TRUE(small.sent()) << small.ToString();
  EXPECT_EQ(RelayStats("relay")["received"], 1);
}

TEST_F(EmailE2E, ShutdownAnswersEveryQueuedMessage) {
  const int port = StartRelay("relay", {{"delay_ms", {{"slow.test", 200}}}});
  auto sender = EmailSender::Create(Options({Relay("relay", port)}));
  ASSERT_TRUE(sender);
  Outcomes outcomes;
  for (int i = 0; i < 20; ++i) {
    const std::string to = "s" + std::to_string(i) + "@slow.test";
    ASSERT_TRUE(
        (*sender)->Submit("a@acme.test", to, Message(to), Lane::kBulk, outcomes.Callback()).ok());
  }
  (*sender)->Shutdown(0);
  ASSERT_TRUE(outcomes.Wait(20));
  size_t sent = 0, shut = 0;
  for (const auto& e : outcomes.list()) {
    if (e.outcome.sent()) ++sent;
    if (e.outcome.text.find("shut down") != std::string::npos) ++shut;
  }
  EXPECT_EQ(sent + shut, 20u);
  EXPECT_GE(shut, 1u);
  EXPECT_EQ((*sender)
                ->Submit("a@acme.test", "late@slow.test", Message("late@slow.test"), Lane::kBulk,
                         outcomes.Callback())
                .code(),
            Code::kUnavailable);
}

}  // namespace
}  // namespace nudge::channel
