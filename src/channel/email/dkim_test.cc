// DKIM signing through libopendkim. That the signature verifies is checked by an independent
// verifier (python3-dkim) in tests/email/; here: the tags, the signed headers, the errors.
#include "channel/email/dkim.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdio>
#include <fstream>

#include "channel/email/message.h"

namespace nudge::channel {
namespace {

std::string Pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return out;
}

const std::string& RsaKey() {
  static const std::string pem = Pem(EVP_RSA_gen(2048));
  return pem;
}

std::string Unfolded(const std::string& header) {
  std::string out;
  for (char c : header)
    if (c != '\r' && c != '\n' && c != '\t' && c != ' ') out += c;
  return out;
}

TEST(Dkim, SignsRsaSha256RelaxedWithTheListedHeaders) {
  auto signer = DkimSigner::Create("acme.test", "s1", RsaKey());
  ASSERT_TRUE(signer) << signer.error().ToString();
  EXPECT_EQ((*signer)->PublicKeyRecord().rfind("v=DKIM1; k=rsa; p=MII", 0), 0u);

  core::VirtualClock clock(1772701623000);
  EmailContent c;
  c.from = {"Acme", "hello@acme.test"};
  c.to = {"", "ann@example.com"};
  c.subject = "Hello";
  c.text = "Hi\n";
  c.html = "<p>Hi</p>";
  c.message_id = "x1@acme.test";
  c.headers = {{"List-Unsubscribe", "<https://acme.test/u/1>"},
               {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"}};
  std::string msg = *BuildMessage(c, clock);
  const std::string original = msg;
  ASSERT_TRUE((*signer)->Sign(msg).ok());
  ASSERT_EQ(msg.rfind("DKIM-Signature: ", 0), 0u);
  const size_t end = msg.find("\r\nDate: ");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(msg.substr(end + 2), original);
  const std::string sig = msg.substr(0, end + 2);
  for (size_t i = 0; i < sig.size(); ++i) {
    if (sig[i] == '\n') {
      EXPECT_EQ(sig[i - 1], '\r');
    }
  }
  const std::string tags = Unfolded(sig);
  EXPECT_NE(tags.find("a=rsa-sha256;"), std::string::npos) << tags;
  EXPECT_NE(tags.find("c=relaxed/relaxed;"), std::string::npos) << tags;
  EXPECT_NE(tags.find("d=acme.test;"), std::string::npos);
  EXPECT_NE(tags.find("s=s1;"), std::string::npos);
  EXPECT_NE(tags.find("bh="), std::string::npos);
  const size_t h = tags.find(";h=");
  ASSERT_NE(h, std::string::npos) << tags;
  std::string list = tags.substr(h + 3, tags.find(';', h + 1) - h - 3);
  for (char& ch : list) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* name : {"from", "to", "subject", "date", "message-id", "mime-version",
                           "content-type", "list-unsubscribe", "list-unsubscribe-post"})
    EXPECT_NE((":" + list + ":").find(std::string(":") + name + ":"), std::string::npos)
        << name << " not in h=" << list;
}

TEST(Dkim, KeyErrorsSayWhatIsWrong) {
  auto garbage = DkimSigner::Create("acme.test", "s1", "not a key");
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message().find("not a PEM private key"), std::string::npos);

  const std::string ec = Pem(EVP_EC_gen("P-256"));
  auto wrong_kind = DkimSigner::Create("acme.test", "s1", ec);
  ASSERT_FALSE(wrong_kind);
  EXPECT_NE(wrong_kind.error().message().find("not an RSA key"), std::string::npos);

  auto missing = DkimSigner::FromConfig({"acme.test", "s1", "/nonexistent/dkim.pem"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().where(), "dkim.key_file");
  EXPECT_NE(missing.error().message().find("cannot read the DKIM key '/nonexistent/dkim.pem'"),
            std::string::npos);
  EXPECT_NE(missing.error().message().find("No such file"), std::string::npos);

  const std::string path = ::testing::TempDir() + "/not-a-key.pem";
  std::ofstream(path) << "hello\n";
  auto bad_file = DkimSigner::FromConfig({"acme.test", "s1", path});
  ASSERT_FALSE(bad_file);
  EXPECT_NE(bad_file.error().message().find(path), std::string::npos);
  std::remove(path.c_str());

  EXPECT_FALSE(DkimSigner::Create("", "s1", RsaKey()));
  EXPECT_FALSE(DkimSigner::Create("acme.test", "s 1", RsaKey()));
}

}  // namespace
}  // namespace nudge::channel
