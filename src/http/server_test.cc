#include "http/server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace nudge::http {
namespace {

struct Got {
  long status = 0;
  std::string body;
};

size_t Collect(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

// `answered`: whether the server must answer (false: a connection it turns away).
// `header`: one more request header line ("Name: value"), if not empty.
Got Fetch(uint16_t port, const std::string& method, const std::string& path,
          const std::string& body = "", bool answered = true, const std::string& header = "") {
  CURL* c = curl_easy_init();
  Got got;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_slist* h = curl_slist_append(nullptr, "Expect:");
  if (!header.empty()) h = curl_slist_append(h, header.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (!body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &got.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  const CURLcode done = curl_easy_perform(c);
  if (answered) {
    EXPECT_EQ(done, CURLE_OK);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &got.status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return got;
}

// Answers `body` after `ms` from a thread of its own, as a handler that waits on other work.
void AnswerLater(Reply reply, int ms, std::string body) {
  std::thread([reply = std::move(reply), ms, body = std::move(body)]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    Response resp;
    resp.body = std::move(body);
    reply(std::move(resp));
  }).detach();
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(Router router) {
    server_ = std::make_unique<Server>(ServerOptions{"127.0.0.1:0", 2, 10}, std::move(router),
                                       clock_, nullptr);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  core::SystemClock clock_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, RoutesCaptureSegmentsAndEchoBodies) {
  Router r;
  r.Add("POST", "/things/{id}/echo", [](Request& req, Reply reply) {
    Response resp;
    resp.body = req.params["id"] + ":" + req.body + ":" + req.Query("q");
    reply(std::move(resp));
  });
  Start(std::move(r));
  Got g = Fetch(server_->port(), "POST", "/things/42/echo?q=x%20y", std::string(100000, 'b'));
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body, "42:" + std::string(100000, 'b') + ":x y");
}

TEST_F(ServerTest, RepliesMayComeLaterFromAnotherThread) {
  Router r;
  r.Add("GET", "/slow", [](Request&, Reply reply) { AnswerLater(std::move(reply), 50, "late"); });
  Start(std::move(r));
  // Several at once: a waiting reply must not hold up the others.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&] { ok += Fetch(server_->port(), "GET", "/slow").body == "late"; });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 8);
}

TEST_F(ServerTest, UnknownPathsWrongMethodsAndOversizedBodies) {
  Router r;
  r.Add(
      "POST", "/small", [](Request&, Reply reply) { reply(Response{}); }, 10);
  Start(std::move(r));
  EXPECT_EQ(Fetch(server_->port(), "GET", "/nowhere").status, 404);
  EXPECT_EQ(Fetch(server_->port(), "GET", "/small").status, 405);
  Got big = Fetch(server_->port(), "POST", "/small", std::string(11, 'x'));
  EXPECT_EQ(big.status, 413);
  EXPECT_NE(big.body.find("exceeds 10 bytes"), std::string::npos);
  EXPECT_EQ(Fetch(server_->port(), "POST", "/small", "0123456789").status, 200);
}

// Sends `head` (request line and headers) and no body; returns what the server writes back
// within two seconds.
std::string HeadersOnly(uint16_t port, const std::string& head) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, head.data(), head.size(), 0) == static_cast<ssize_t>(head.size())) {
    char buf[4096];
    for (int reads = 0; reads < 16; ++reads) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      if (got.find("\r\n\r\n") != std::string::npos &&
          (got.find('}') != std::string::npos || got.rfind("HTTP/1.1 100", 0) == 0))
        break;
    }
  }
  close(fd);
  return got;
}

// A client that waits for "100 Continue" before its body is answered 413 at once when its
// Content-Length is past the route's limit: it never has to send the body.
TEST_F(ServerTest, AnOversizedBodyAnnouncedWithExpectContinueIsRefusedUnsent) {
  Router r;
  r.Add(
      "POST", "/small", [](Request&, Reply reply) { reply(Response{}); }, 10);
  Start(std::move(r));
  const std::string got =
      HeadersOnly(server_->port(),
                  "POST /small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n"
                  "Expect: 100-continue\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  EXPECT_EQ(got.find("100 Continue"), std::string::npos) << got;
  EXPECT_NE(got.find("exceeds 10 bytes"), std::string::npos) << got;
  // Within the limit, the client is asked for its body as usual.
  const std::string small =
      HeadersOnly(server_->port(),
                  "POST /small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n");
  EXPECT_EQ(small.rfind("HTTP/1.1 100 Continue", 0), 0u) << small;
  EXPECT_EQ(Fetch(server_->port(), "POST", "/small", "01234").status, 200);
}

TEST_F(ServerTest, LargeHeadersFitUpToTheirLimitAndPastItAre431) {
  Router r;
  r.Add("POST", "/h", [](Request& req, Reply reply) {
    Response resp;
    resp.body = std::to_string(req.Header("x-big").size());
    reply(std::move(resp));
  });
  Start(std::move(r));
  Got fits = Fetch(server_->port(), "POST", "/h", "{}", true, "X-Big: " + std::string(12000, 'a'));
  EXPECT_EQ(fits.status, 200);
  EXPECT_EQ(fits.body, "12000");
  Got past = Fetch(server_->port(), "POST", "/h", "{}", true, "X-Big: " + std::string(24000, 'a'));
  EXPECT_EQ(past.status, 431);
  EXPECT_EQ(Fetch(server_->port(), "POST", "/h", "{}").body, "0") << "the server goes on serving";
}

// Draining: a request in flight is answered, a new connection is turned away, and stopping
// never aborts the process, over many rounds with clients busy while the server drains.
// (MHD_quiesce_daemon, used before, raced the daemon's epoll threads for the listening socket
// and aborted the process about once in a few hundred stops of the unit tests; too rarely for
// this loop to catch it every time, but it runs the drain the way that went wrong.)
TEST(ServerDrain, InFlightAnsweredNewConnectionsTurnedAwayAcrossManyStops) {
  core::SystemClock clock;
  for (int round = 0; round < 60; ++round) {
    Router r;
    std::atomic<int> slow_arrived{0};
    r.Add("GET", "/fast", [](Request&, Reply reply) { reply(Response{}); });
    r.Add("GET", "/slow", [&slow_arrived](Request&, Reply reply) {
      ++slow_arrived;
      AnswerLater(std::move(reply), 30, "done");
    });
    Server server(ServerOptions{"127.0.0.1:0", 2, 10}, std::move(r), clock, nullptr);
    ASSERT_TRUE(server.Start().ok());
    const uint16_t port = server.port();
    Got in_flight;
    std::thread client([&] { in_flight = Fetch(port, "GET", "/slow"); });
    std::atomic<bool> busy{true};
    std::vector<std::thread> load;
    for (int k = 0; k < 3; ++k)
      load.emplace_back([&] {
        for (int n = 0; n < 200 && busy.load(); ++n) Fetch(port, "GET", "/fast", "", false);
      });
    // Drain once the slow request is in flight (on a busy machine it may take a while to
    // arrive; a request that arrives after the drain began is rightly turned away).
    for (int waited = 0; waited < 5000 && slow_arrived.load() == 0; ++waited)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(slow_arrived.load(), 1) << "round " << round << ": the slow request never arrived";
    server.Quiesce();
    if (round % 10 == 0) {
      const Got late = Fetch(port, "GET", "/slow", "", /*answered=*/false);
      EXPECT_EQ(late.status, 0) << "round " << round << ": a new connection was served";
    }
    client.join();
    EXPECT_NE(in_flight.status, 0) << "round " << round << ": the request in flight was dropped";
    busy = false;
    for (auto& t : load) t.join();
    server.Stop(2000);
  }
}

// A request whose headers came before the drain and whose body is still arriving is answered:
// the drain waits for its body as for a request being handled.
TEST(ServerDrain, ARequestWhoseBodyIsStillArrivingIsAnswered) {
  core::SystemClock clock;
  Router r;
  r.Add("POST", "/echo", [](Request& req, Reply reply) {
    Response resp;
    resp.body = req.body;
    reply(std::move(resp));
  });
  Server server(ServerOptions{"127.0.0.1:0", 2, 10}, std::move(r), clock, nullptr);
  ASSERT_TRUE(server.Start().ok());
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // The server asks for the body ("100 Continue") once it has taken the headers in: the drain
  // below begins after them however late the server's threads run.
  const std::string head =
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
      "Expect: 100-continue\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  std::string got;
  char buf[1024];
  for (int reads = 0; reads < 16 && got.find("\r\n\r\n") == std::string::npos; ++reads) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ASSERT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  got.clear();
  ASSERT_EQ(send(fd, "first", 5, 0), 5);
  std::thread stop([&] { server.Stop(3000); });
  for (int waited = 0; waited < 5000 && !server.draining(); ++waited)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(server.draining()) << "the drain never began";
  EXPECT_EQ(send(fd, "-last", 5, 0), 5);
  for (int reads = 0; reads < 16 && got.find("first-last") == std::string::npos; ++reads) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  stop.join();
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  EXPECT_NE(got.find("first-last"), std::string::npos) << got;
}

TEST(ParseListen, AcceptsHostPortAndRejectsNonsense) {
  EXPECT_EQ(ParseListen("127.0.0.1:8080")->second, 8080);
  EXPECT_EQ(ParseListen("[::1]:80")->first, "::1");
  EXPECT_EQ(ParseListen(":9000")->first, "");
  EXPECT_FALSE(ParseListen("localhost"));
  EXPECT_FALSE(ParseListen("127.0.0.1:http"));
  EXPECT_FALSE(ParseListen("127.0.0.1:70000"));
}

}  // namespace
}  // namespace nudge::http
