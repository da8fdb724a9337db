// Load generator for bench/memory.sh: sends CONTACTS Segment identify calls, each with 10
// traits and a unique userId, email and messageId, to POST /v1/batch over N keep-alive
// connections (one thread each), and waits for every acknowledgement.
//
// Build: g++ -O2 -std=c++20 -pthread bench/gen_identify.cc -o gen_identify
// Usage: gen_identify PORT BASIC_AUTH CONTACTS [BATCH=250] [CONNECTIONS=8] [RUN=id] [TIMEOUT=0]
//   BASIC_AUTH is base64("writekey:"). TIMEOUT (seconds, 0 = none): no batch is started
//   after it, and a batch waits at most 300 s for its answer. Prints one JSON object, with
//   the acknowledged count every 5 s ("progress": [[seconds, contacts], ...]); exits 1 if
//   any batch was not acknowledged with 200 {"success":true} or the timeout cut the run short.
//
// A batch whose connection fails before its answer is sent again on a new connection
// (at most 5 times): the messageIds make the retry idempotent on the server. A 503 (nudge's
// ingest backlog is full) is sent again after its Retry-After second, until the timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* kFirst[] = {"Ada",    "Grace",   "Alan", "Katherine", "Linus",  "Margaret",
                        "Dennis", "Barbara", "Ken",  "Frances",   "Edsger", "Radia",
                        "Donald", "Hedy",    "Tim",  "Sophie"};
const char* kLast[] = {"Lovelace", "Hopper", "Turing",      "Johnson", "Torvalds", "Hamilton",
                       "Ritchie",  "Liskov", "Thompson",    "Allen",   "Dijkstra", "Perlman",
                       "Knuth",    "Lamarr", "Berners-Lee", "Wilson"};
const char* kPlan[] = {"free", "trial", "starter", "growth", "enterprise"};
const char* kCountry[] = {"US", "DE", "FR", "GB", "NL", "ES", "IT", "CA", "AU", "SE"};
const char* kIndustry[] = {"Software", "E-commerce",    "Healthcare", "Education",  "Finance",
                           "Media",    "Manufacturing", "Travel",     "Non-profit", "Real estate"};

struct Options {
  int port = 0;
  std::string auth;
  long contacts = 0;
  long batch = 250;
  int connections = 8;
  std::string run = "mem";
  double timeout = 0;
};

// The traits of contact i: the same fields and value shapes as the sqlite3 reference in
// bench/memory.sh builds with json_object().
void AppendIdentify(std::string& out, const Options& o, long i) {
  char buf[1024];
  const char* first = kFirst[i % 16];
  const char* last = kLast[(i / 16) % 16];
  const int n = std::snprintf(
      buf, sizeof buf,
      "{\"type\":\"identify\",\"messageId\":\"%s-%ld\",\"userId\":\"user-%ld\","
      "\"traits\":{\"email\":\"%s.%s.%ld@company%ld.example.com\",\"first_name\":\"%s\","
      "\"last_name\":\"%s\",\"company\":\"Company %ld Ltd\",\"plan\":\"%s\","
      "\"country\":\"%s\",\"phone\":\"+1 415 2%02ld %04ld\","
      "\"created_at\":\"2023-%02ld-%02ldT%02ld:%02ld:00Z\",\"seats\":%ld,"
      "\"industry\":\"%s\"},\"timestamp\":\"2024-05-01T12:00:00.000Z\"}",
      o.run.c_str(), i, i, first, last, i, i % 5000, first, last, i % 5000, kPlan[i % 5],
      kCountry[i % 10], (i / 10000) % 100, i % 10000, 1 + i % 12, 1 + i % 28, i % 24, i % 60,
      1 + i % 500, kIndustry[i % 10]);
  out.append(buf, static_cast<size_t>(n));
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{300, 0};  // an answer that takes longer fails the batch instead of hanging
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads one response; returns its status (0 on a connection error) and sets body.
int ReadResponse(int fd, std::string& buffer, std::string& body) {
  char chunk[8192];
  size_t header_end;
  while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return 0;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  int status = 0;
  if (std::sscanf(buffer.c_str(), "HTTP/1.%*d %d", &status) != 1) return 0;
  size_t length = 0;
  for (size_t pos = buffer.find("\r\n"); pos < header_end; pos = buffer.find("\r\n", pos + 2)) {
    if (strncasecmp(buffer.c_str() + pos + 2, "content-length:", 15) == 0)
      length = std::strtoul(buffer.c_str() + pos + 17, nullptr, 10);
  }
  const size_t total = header_end + 4 + length;
  while (buffer.size() < total) {
    const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return 0;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  body.assign(buffer, header_end + 4, length);
  buffer.erase(0, total);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(
        stderr,
        "usage: %s PORT BASIC_AUTH CONTACTS [BATCH=250] [CONNECTIONS=8] [RUN=id] [TIMEOUT=0]\n",
        argv[0]);
    return 2;
  }
  Options o;
  o.port = std::atoi(argv[1]);
  o.auth = argv[2];
  o.contacts = std::atol(argv[3]);
  if (argc > 4) o.batch = std::atol(argv[4]);
  if (argc > 5) o.connections = std::atoi(argv[5]);
  if (argc > 6) o.run = argv[6];
  if (argc > 7) o.timeout = std::atof(argv[7]);
  if (o.port <= 0 || o.contacts <= 0 || o.batch <= 0 || o.connections <= 0) {
    std::fprintf(stderr, "gen_identify: bad arguments\n");
    return 2;
  }

  const long batches = (o.contacts + o.batch - 1) / o.batch;
  std::atomic<long> next{0};
  std::atomic<long> acked{0}, retries{0}, backoffs{0}, failed{0}, requests{0};
  std::atomic<unsigned long long> body_bytes{0};
  const std::string head = "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(o.port) +
                           "\r\nContent-Type: application/json\r\nAuthorization: Basic " + o.auth +
                           "\r\nContent-Length: ";

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::atomic<bool> timed_out{false};

  // Progress: the acknowledged count every 5 s (to stderr every 30 s).
  std::mutex progress_mutex;
  std::condition_variable progress_cv;
  bool finished = false;
  std::string progress;
  std::thread monitor([&] {
    std::unique_lock lock(progress_mutex);
    for (int tick = 1;; ++tick) {
      if (progress_cv.wait_until(lock, start + std::chrono::seconds(5 * tick),
                                 [&] { return finished; }))
        return;
      char item[64];
      std::snprintf(item, sizeof item, "%s[%d,%ld]", progress.empty() ? "" : ",", 5 * tick,
                    acked.load());
      progress += item;
      if (tick % 6 == 0)
        std::fprintf(stderr, "gen_identify: %d s: %ld of %ld contacts acknowledged\n", 5 * tick,
                     acked.load(), o.contacts);
    }
  });

  std::vector<std::thread> threads;
  for (int t = 0; t < o.connections; ++t) {
    threads.emplace_back([&] {
      int fd = -1;
      std::string body, request, buffer, reply;
      for (;;) {
        if (o.timeout > 0 && elapsed() > o.timeout) {
          timed_out = true;
          break;
        }
        const long b = next.fetch_add(1);
        if (b >= batches) break;
        const long from = b * o.batch, to = std::min(o.contacts, from + o.batch);
        body.assign("{\"batch\":[");
        for (long i = from; i < to; ++i) {
          if (i > from) body += ',';
          AppendIdentify(body, o, i);
        }
        body += "]}";
        body_bytes += body.size();
        request = head + std::to_string(body.size()) + "\r\n\r\n" + body;
        bool done = false;
        for (int attempt = 0; attempt < 6 && !done; ++attempt) {
          if (attempt > 0) {
            ++retries;
            std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
          }
          if (fd < 0) fd = Connect(o.port);
          if (fd < 0) continue;
          buffer.clear();
          int status = 0;
          if (SendAll(fd, request)) status = ReadResponse(fd, buffer, reply);
          ++requests;
          if (status == 0) {  // connection error: reconnect and send the batch again
            close(fd);
            fd = -1;
            continue;
          }
          if (status == 503 && (o.timeout == 0 || elapsed() < o.timeout)) {
            // The ingest backlog is full: wait the Retry-After second and send it again, as
            // the Segment SDKs do; this is not an attempt.
            ++backoffs;
            --attempt;
            std::this_thread::sleep_for(std::chrono::seconds(1));
            continue;
          }
          if (status != 200 || reply.find("\"success\":true") == std::string::npos) {
            std::fprintf(stderr, "gen_identify: batch %ld: HTTP %d %s\n", b, status,
                         reply.substr(0, 300).c_str());
            break;
          }
          done = true;
        }
        if (done)
          acked += to - from;
        else
          ++failed;
      }
      if (fd >= 0) close(fd);
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = elapsed();
  {
    std::lock_guard lock(progress_mutex);
    finished = true;
  }
  progress_cv.notify_all();
  monitor.join();
  const long sent_batches = std::min(next.load(), batches);
  std::printf(
      "{\"contacts\":%ld,\"acknowledged\":%ld,\"batch\":%ld,\"connections\":%d,"
      "\"requests\":%ld,\"retries\":%ld,\"busy_retries\":%ld,\"failed_batches\":%ld,"
      "\"timed_out\":%s,"
      "\"seconds\":%.3f,\"contacts_per_s\":%.1f,\"avg_message_bytes\":%.1f,"
      "\"progress\":[%s]}\n",
      o.contacts, acked.load(), o.batch, o.connections, requests.load(), retries.load(),
      backoffs.load(), failed.load(), timed_out ? "true" : "false", seconds,
      static_cast<double>(acked.load()) / seconds,
      sent_batches > 0 ? static_cast<double>(body_bytes.load()) /
                             static_cast<double>(std::min(o.contacts, sent_batches * o.batch))
                       : 0.0,
      progress.c_str());
  return failed.load() == 0 && acked.load() == o.contacts ? 0 : 1;
}
