#include "channel/email/config.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/yaml.h"

namespace nudge::channel {
namespace {

Result<EmailConfig> Parse(const std::string& text, EmailConfigContext ctx = {}) {
  auto doc = core::LoadYaml(text, "nudge.yaml");
  if (!doc) return Err(doc.error());
  if (!ctx.getenv) {
    ctx.getenv = [](const std::string& name) -> std::optional<std::string> {
      if (name == "SMTP_PASSWORD") return "s3cret";
      return std::nullopt;
    };
  }
  return ParseEmailConfig(*doc, doc->root["channels"]["email"], ctx);
}

// A DKIM key in a directory of its own, as a configuration names it.
std::string KeyDir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/nudge_email_config_" + std::to_string(getpid());
    std::filesystem::create_directories(d);
    EVP_PKEY* key = EVP_RSA_gen(2048);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::ofstream(d + "/dkim.pem") << std::string(data, static_cast<size_t>(n));
    BIO_free(bio);
    EVP_PKEY_free(key);
    return d;
  }();
  return dir;
}

TEST(EmailConfig, ReadsTheDocumentedExample) {
  EmailConfigContext context;
  context.base_dir = KeyDir();
  auto c = Parse(R"(
public_url: http://127.0.0.1:8080
channels:
  email:
    from: "Acme <hello@acme.test>"
    postal_address: "Acme Inc, 1 Main St, Springfield"
    relays:
      - { name: primary, host: 127.0.0.1, port: 2525, tls: none, pool: 8, rate: 0 }
    dkim: { domain: acme.test, selector: s1, key_file: dkim.pem }
)",
                 context);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->from.name, "Acme");
  EXPECT_EQ(c->from.address, "hello@acme.test");
  EXPECT_EQ(c->postal_address, "Acme Inc, 1 Main St, Springfield");
  ASSERT_EQ(c->relays.size(), 1u);
  EXPECT_EQ(c->relays[0].name, "primary");
  EXPECT_EQ(c->relays[0].port, 2525);
  EXPECT_EQ(c->relays[0].tls, TlsMode::kNone);
  EXPECT_EQ(c->relays[0].pool, 8);
  EXPECT_EQ(c->relays[0].rate, 0);
  ASSERT_TRUE(c->dkim);
  EXPECT_EQ(c->dkim->selector, "s1");
  EXPECT_EQ(c->dkim->key_file, KeyDir() + "/dkim.pem");
  SenderOptions o = c->ToSenderOptions();
  EXPECT_EQ(o.relays.size(), 1u);
}

// A key that cannot be read or is no key stops the configuration at key_file's position.
TEST(EmailConfig, AMissingOrMalformedDkimKeyIsRefusedWhereItIsNamed) {
  EmailConfigContext context;
  context.base_dir = KeyDir();
  std::ofstream(KeyDir() + "/junk.pem") << "not a key";
  for (const char* file : {"missing.pem", "junk.pem"}) {
    auto c = Parse(std::string(R"(
channels:
  email:
    from: hello@acme.test
    postal_address: x
    relays: [{ name: r, host: 127.0.0.1 }]
    dkim: { domain: acme.test, selector: s1, key_file: )") +
                       file + " }\n",
                   context);
    ASSERT_FALSE(c) << file;
    EXPECT_NE(c.error().where().find("nudge.yaml:7:"), std::string::npos) << c.error().ToString();
    EXPECT_NE(c.error().message().find("channels.email.dkim.key_file"), std::string::npos)
        << c.error().ToString();
  }
}

TEST(EmailConfig, FailoverRelaysAuthAndDefaults) {
  auto c = Parse(R"(
channels:
  email:
    from: hello@acme.test
    postal_address: x
    domain_concurrency: 5
    relays:
      - { name: a, host: mx1.test, tls: implicit, rate: 2.5 }
      - name: b
        host: mx2.test
        tls: starttls
        username: acme
        password_env: SMTP_PASSWORD
        auth: login
        tls_verify: false
        transactional_reserved: 2
)");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->domain_concurrency, 5);
  EXPECT_EQ(c->relays[0].port, 465);
  EXPECT_EQ(c->relays[0].rate, 2.5);
  EXPECT_EQ(c->relays[0].pool, 4);
  EXPECT_EQ(c->relays[1].port, 587);
  EXPECT_EQ(c->relays[1].password, "s3cret");
  EXPECT_EQ(c->relays[1].auth_mechanism, "login");
  EXPECT_FALSE(c->relays[1].tls_verify);
  EXPECT_EQ(c->relays[1].transactional_reserved, 2);
  EXPECT_FALSE(c->dkim);
}

TEST(EmailConfig, ErrorsNameTheKeyAndThePlace) {
  const std::string head = "channels:\n  email:\n    from: a@b.test\n    postal_address: x\n";
  struct Case {
    std::string yaml;
    std::string message_start;
    std::string where;
  };
  const Case cases[] = {
      {head + "    relays:\n      - { name: a, host: h, port: 70000 }\n",
       "channels.email.relays[0].port: expected a whole number", "nudge.yaml:6:35"},
      {head + "    relays:\n      - { name: a, host: h, tls: ssl }\n",
       "channels.email.relays[0].tls: expected none, starttls or implicit", "nudge.yaml:6:34"},
      {head + "    relays:\n      - { name: a, host: h, colour: red }\n",
       "channels.email.relays[0].colour: unknown key", "nudge.yaml:6:29"},
      {head + "    relays:\n      - { name: a, host: h }\n      - { name: a, host: i }\n",
       "channels.email.relays[1].name: the name 'a' is used", "nudge.yaml:7:17"},
      {head + "    relays:\n      - { name: a, host: h, username: u, password_env: NOPE }\n",
       "channels.email.relays[0].password_env: the environment variable NOPE is not set", ""},
      {head + "    relays:\n      - { name: a, pool: 0, host: h }\n",
       "channels.email.relays[0].pool: expected a whole number from 1 to 64", ""},
      {head + "    relays:\n      - { host: h }\n", "channels.email.relays[0].name: is required",
       ""},
      {head, "channels.email.relays: is required", ""},
      {head + "    relays: []\n", "channels.email.relays: expected a list", ""},
      {head + "    relays:\n      - { name: a, host: h }\n    dkim: { domain: d.test }\n",
       "channels.email.dkim.selector: is required", ""},
      {"channels:\n  email:\n    from: 'Acme <nope>'\n",
       "channels.email.from: 'nope' is not an address", ""},
  };
  for (const Case& c : cases) {
    auto r = Parse(c.yaml);
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_EQ(r.error().message().rfind(c.message_start, 0), 0u) << r.error().message() << "\n"
                                                                 << c.yaml;
    if (!c.where.empty()) {
      EXPECT_EQ(r.error().where(), c.where) << c.yaml;
    }
  }
}

}  // namespace
}  // namespace nudge::channel
