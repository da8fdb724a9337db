// The tracking and admin APIs in process, over real HTTP, on a real SQLite store.
#include "http/api.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/crypto.h"

namespace nudge::http {
namespace {

using nlohmann::json;

struct Got {
  long status = 0;
  json body;
};

size_t Collect(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

std::string Gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_api_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = std::move(
        *store::OpenSqliteStore({.path = (dir_ / "n.db").string(), .metrics = &metrics_}));
    workspaces_ = std::make_unique<store::WorkspaceRegistry>(*store_, clock_);
    ASSERT_TRUE(workspaces_->Bootstrap(std::string("wk"), std::string("ak")));
    inbox_ = std::move(*store::Inbox::Open({.path = (dir_ / "inbox").string(), .legacy_path = {}}));
    pipeline_ = std::make_unique<ingest::Pipeline>(*store_, *inbox_, applier_, metrics_,
                                                   ingest::PipelineOptions{});
    ASSERT_TRUE(pipeline_->Start());
    ctx_ = std::make_unique<ApiContext>(
        ApiContext{*store_, *workspaces_, applier_, metrics_, clock_, {}});
    ctx_->pipeline = pipeline_.get();
    Router router;
    AddTrackingRoutes(router, *ctx_);
    AddAdminRoutes(router, *ctx_);
    AddOpsRoutes(router, *ctx_);
    server_ = std::make_unique<Server>(ServerOptions{"127.0.0.1:0", 2, 10}, std::move(router),
                                       clock_, &metrics_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    server_->Stop();
    pipeline_->Stop(10000);
    store_->Close();
    inbox_->Close();
    std::filesystem::remove_all(dir_);
  }

  Got Call(const std::string& method, const std::string& path, const std::string& body,
           std::vector<std::string> headers) {
    CURL* c = curl_easy_init();
    std::string raw;
    const std::string url = "http://127.0.0.1:" + std::to_string(server_->port()) + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_slist* h = curl_slist_append(nullptr, "Expect:");
    for (auto& x : headers) h = curl_slist_append(h, x.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (method == "POST") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &raw);
    EXPECT_EQ(curl_easy_perform(c), CURLE_OK);
    Got got;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &got.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    got.body = json::parse(raw, nullptr, false);
    return got;
  }
  Got Track(const std::string& path, const std::string& body, const std::string& key = "wk",
            std::vector<std::string> headers = {}) {
    headers.push_back("Authorization: Basic " + core::Base64Encode(key + ":"));
    return Call("POST", path, body, headers);
  }
  Got Admin(const std::string& method, const std::string& path, const std::string& key = "ak") {
    return Call(method, path, "", {"Authorization: Bearer " + key});
  }

  std::filesystem::path dir_;
  core::SystemClock clock_;
  core::MetricsRegistry metrics_;
  profile::Applier applier_{profile::ProfileOptions{}};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Inbox> inbox_;
  std::unique_ptr<ingest::Pipeline> pipeline_;
  std::unique_ptr<store::WorkspaceRegistry> workspaces_;
  std::unique_ptr<ApiContext> ctx_;
  std::unique_ptr<Server> server_;
};

TEST_F(ApiTest, AcknowledgedEventsAreReadableAtOnce) {
  Got g =
      Track("/v1/track", R"({"userId":"ann","event":"Signed Up","properties":{"plan":"trial"}})");
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body, json::parse(R"({"success":true})"));
  Got events = Admin("GET", "/api/v1/contacts/ann/events?limit=5");
  ASSERT_EQ(events.status, 200);
  ASSERT_EQ(events.body["events"].size(), 1u);
  EXPECT_EQ(events.body["events"][0]["event"], "Signed Up");
  EXPECT_EQ(events.body["events"][0]["properties"]["plan"], "trial");
}

TEST_F(ApiTest, GzipIsRecognisedWhateverTheHeadersSay) {
  const std::string body = R"({"batch":[{"type":"track","userId":"bo","event":"A"},
                                         {"type":"track","userId":"bo","event":"B"}]})";
  Got g = Track("/v1/batch", Gzip(body), "wk", {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/bo/events").body["events"].size(), 2u);
  // Claimed gzip that is not: the bytes decide, it is read as it is.
  g = Track("/v1/track", R"({"userId":"bo","event":"C"})", "wk", {"Content-Encoding: gzip"});
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/bo/events").body["events"].size(), 3u);
  // Gzip that is broken: refused, named.
  g = Track("/v1/track", Gzip(body).substr(0, 20), "wk", {"Content-Encoding: gzip"});
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["field"], "body") << g.body.dump();
  // A bomb: 2 MB of zeros in a few KB.
  g = Track("/v1/batch", Gzip(std::string(2 << 20, '0')));
  EXPECT_EQ(g.status, 413);
}

TEST_F(ApiTest, WrongKeysAreRefusedAndTheBodyKeyIsAccepted) {
  Got wrong = Track("/v1/track", R"({"userId":"x","event":"E"})", "nope");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_NE(wrong.body["error"].get<std::string>().find("unknown write key"), std::string::npos)
      << wrong.body.dump();
  Got none = Call("POST", "/v1/track", R"({"userId":"x","event":"E"})", {});
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.body["error"].get<std::string>().find("a write key is required"),
            std::string::npos)
      << none.body.dump();
  Got wrong_in_body =
      Call("POST", "/v1/track", R"({"writeKey":"nope","userId":"x","event":"E"})", {});
  EXPECT_NE(wrong_in_body.body["error"].get<std::string>().find("unknown write key"),
            std::string::npos)
      << wrong_in_body.body.dump();
  EXPECT_EQ(Call("POST", "/v1/track", R"({"writeKey":"wk","userId":"x","event":"E"})", {}).status,
            200);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/x", "wk").status, 401);  // a write key is not admin
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/x", "ak").status, 200);
}

TEST_F(ApiTest, InvalidBatchesStoreNothingAndNameTheField) {
  Got g = Track("/v1/batch", R"({"batch":[{"type":"track","userId":"cy","event":"A"},
                                           {"type":"track","userId":"cy"}]})");
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["field"], "batch[1].event");
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/cy").status, 404);
  g = Track("/v1/track", "{\"userId\": \"cy\",\n \"event\": }");
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["line"], 2);
  EXPECT_EQ(Track("/v1/track", std::string(40000, ' ')).status, 413);
}

// Malformed JSON sent to the admin API is refused with the line and column where it breaks,
// a document of the wrong kind with what it is; nothing is created.
TEST_F(ApiTest, AdminBodiesOfMalformedJsonSayWhere) {
  const std::vector<std::string> auth = {"Authorization: Bearer ak"};
  Got g = Call("POST", "/api/v1/workspaces", "{\n  \"name\": \"shop\",\n}", auth);
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["line"], 3) << g.body.dump();
  EXPECT_EQ(g.body["column"], 1) << g.body.dump();
  EXPECT_NE(g.body["error"].get<std::string>().find("malformed JSON"), std::string::npos)
      << g.body.dump();
  g = Call("POST", "/api/v1/workspaces", R"({"name": "sh)", auth);
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["line"], 1) << g.body.dump();
  EXPECT_EQ(g.body["column"], 12) << g.body.dump();  // the last character read, as /v1 says
  g = Call("POST", "/api/v1/contacts/import", R"([{"email": "a@example.com"}])", auth);
  EXPECT_EQ(g.status, 400);
  EXPECT_EQ(g.body["field"], "body") << g.body.dump();
  EXPECT_NE(g.body["error"].get<std::string>().find("not array"), std::string::npos)
      << g.body.dump();
  EXPECT_EQ(Admin("GET", "/api/v1/workspaces").body["workspaces"].size(), 1u);
  g = Call("POST", "/api/v1/workspaces", R"({"name": "shop"})", auth);
  EXPECT_EQ(g.status, 201) << g.body.dump();
  EXPECT_EQ(Admin("GET", "/api/v1/workspaces").body["workspaces"].size(), 2u);
}

TEST_F(ApiTest, ContactsPageWithCursorsAndEraseForGood) {
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(Track("/v1/identify", R"({"userId":"p)" + std::to_string(i) + R"("})").status, 200);
  std::set<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    Got g = Admin("GET", "/api/v1/contacts?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(g.status, 200);
    EXPECT_EQ(g.body["total"], 5);
    for (auto& c : g.body["contacts"]) seen.insert(c["user_id"].get<std::string>());
    if (g.body["next_cursor"].is_null()) break;
    cursor = g.body["next_cursor"].get<std::string>();
  }
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts?cursor=%21%21").status, 400);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts?limit=0").status, 400);

  EXPECT_EQ(Admin("DELETE", "/api/v1/contacts/p3").status, 200);
  EXPECT_EQ(Admin("GET", "/api/v1/contacts/p3").status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/workspace").body["contacts"], 4);
  EXPECT_EQ(Admin("DELETE", "/api/v1/contacts/p3").status, 404);
}

TEST_F(ApiTest, MetricsCountAcceptedAndRejected) {
  Track("/v1/track", R"({"userId":"m","event":"A"})");
  Track("/v1/track", R"({"userId":"m"})");
  // Events are counted as they are applied; an admin read answers once they are.
  EXPECT_EQ(Admin("GET", "/api/v1/workspace").body["events"], 1);
  CURL* c = curl_easy_init();
  std::string raw;
  const std::string url = "http://127.0.0.1:" + std::to_string(server_->port()) + "/metrics";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &raw);
  ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
  curl_easy_cleanup(c);
  EXPECT_NE(raw.find("nudge_events_accepted_total 1"), std::string::npos) << raw;
  EXPECT_NE(raw.find("nudge_events_rejected_total{reason=\"invalid\"} 1"), std::string::npos);
  EXPECT_NE(raw.find("nudge_store_commit_seconds_bucket"), std::string::npos);
  EXPECT_NE(raw.find("nudge_store_log_restart_seconds_count 0"), std::string::npos);
  EXPECT_NE(raw.find("nudge_store_log_restarts_refused_total 0"), std::string::npos);
}

}  // namespace
}  // namespace nudge::http
