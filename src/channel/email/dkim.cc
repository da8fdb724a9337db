#include "channel/email/dkim.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/crypto.h"

// dkim.h is C and spells bool as C99's _Bool.
#define _Bool bool
extern "C" {
#include <opendkim/dkim.h>
}
#undef _Bool

namespace nudge::channel {

namespace {

// Lowercase, as libopendkim compares them case-insensitively.
const char* kSignHeaders[] = {"from",
                              "to",
                              "subject",
                              "date",
                              "message-id",
                              "mime-version",
                              "content-type",
                              "content-transfer-encoding",
                              "reply-to",
                              "list-unsubscribe",
                              "list-unsubscribe-post",
                              "feedback-id",
                              nullptr};
const char* kOversignHeaders[] = {"from", nullptr};

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

bool ValidLabel(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '-' && c != '.' && c != '_') return false;
  return s.front() != '.' && s.back() != '.';
}

}  // namespace

struct DkimSigner::Lib {
  DKIM_LIB* lib = nullptr;
  ~Lib() {
    if (lib) dkim_close(lib);
  }
};

Result<std::unique_ptr<DkimSigner>> DkimSigner::Create(std::string domain, std::string selector,
                                                       std::string_view private_key_pem) {
  if (!ValidLabel(domain))
    return Err(Status::Invalid("expected a domain name such as acme.test", "dkim.domain"));
  if (!ValidLabel(selector))
    return Err(Status::Invalid("expected a selector such as s1", "dkim.selector"));

  // Check the key with OpenSSL first, for errors better than libopendkim's.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
  if (!key) {
    ERR_clear_error();
    return Err(Status::Invalid(
        "not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA "
        "PRIVATE KEY-----', unencrypted)",
        "dkim.key_file"));
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA)
    return Err(
        Status::Invalid("the key is not an RSA key; DKIM rsa-sha256 needs one", "dkim.key_file"));
  if (EVP_PKEY_get_bits(key.get()) < 1024)
    return Err(Status::Invalid("the RSA key has " + std::to_string(EVP_PKEY_get_bits(key.get())) +
                                   " bits; receivers ignore keys under 1024 (use 2048)",
                               "dkim.key_file"));
  unsigned char* der = nullptr;
  const int der_len = i2d_PUBKEY(key.get(), &der);
  if (der_len <= 0) return Err(Status::Internal("cannot encode the public key: " + OpenSslError()));
  std::string public_b64 =
      core::Base64Encode(std::string_view(reinterpret_cast<const char*>(der), der_len));
  OPENSSL_free(der);

  std::unique_ptr<DkimSigner> signer(new DkimSigner());
  signer->domain_ = std::move(domain);
  signer->selector_ = std::move(selector);
  signer->key_pem_ = std::string(private_key_pem);
  signer->public_record_ = "v=DKIM1; k=rsa; p=" + public_b64;
  signer->lib_ = std::make_unique<Lib>();
  signer->lib_->lib = dkim_init(nullptr, nullptr);
  if (!signer->lib_->lib) return Err(Status::Internal("libopendkim: dkim_init failed"));
  DKIM_STAT st = dkim_options(signer->lib_->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
                              const_cast<char**>(kSignHeaders), sizeof(char**));
  if (st == DKIM_STAT_OK)
    st = dkim_options(signer->lib_->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
                      const_cast<char**>(kOversignHeaders), sizeof(char**));
  if (st != DKIM_STAT_OK)
    return Err(Status::Internal(std::string("libopendkim: setting the signed headers: ") +
                                dkim_getresultstr(st)));
  return signer;
}

Result<std::unique_ptr<DkimSigner>> DkimSigner::FromConfig(const DkimConfig& config) {
  std::ifstream in(config.key_file, std::ios::binary);
  if (!in)
    return Err(Status::Invalid(
        "cannot read the DKIM key '" + config.key_file + "': " + std::strerror(errno),
        "dkim.key_file"));
  std::stringstream pem;
  pem << in.rdbuf();
  auto signer = Create(config.domain, config.selector, pem.str());
  if (!signer && signer.error().where() == "dkim.key_file")
    return Err(
        Status::Invalid("'" + config.key_file + "': " + signer.error().message(), "dkim.key_file"));
  return signer;
}

DkimSigner::~DkimSigner() = default;

Result<std::string> DkimSigner::Signature(std::string_view message) const {
  if (message.find("\r\n\r\n") == std::string_view::npos &&
      (message.size() < 2 || message.substr(message.size() - 2) != "\r\n"))
    return Err(Status::Invalid("the message has no end of headers (CRLF CRLF)"));
  DKIM_STAT st = DKIM_STAT_OK;
  DKIM* dkim = dkim_sign(lib_->lib, reinterpret_cast<const unsigned char*>("nudge"), nullptr,
                         reinterpret_cast<dkim_sigkey_t>(const_cast<char*>(key_pem_.c_str())),
                         reinterpret_cast<const unsigned char*>(selector_.c_str()),
                         reinterpret_cast<const unsigned char*>(domain_.c_str()),
                         DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
  if (!dkim)
    return Err(Status::Internal(std::string("libopendkim: dkim_sign: ") + dkim_getresultstr(st)));
  std::unique_ptr<DKIM, decltype(&dkim_free)> guard(dkim, dkim_free);
  auto* bytes = reinterpret_cast<unsigned char*>(const_cast<char*>(message.data()));
  st = dkim_chunk(dkim, bytes, message.size());
  if (st == DKIM_STAT_OK) st = dkim_chunk(dkim, nullptr, 0);
  if (st == DKIM_STAT_OK) st = dkim_eom(dkim, nullptr);
  unsigned char* header = nullptr;
  size_t len = 0;
  constexpr std::string_view kName = "DKIM-Signature: ";
  if (st == DKIM_STAT_OK) st = dkim_getsighdr_d(dkim, kName.size(), &header, &len);
  if (st != DKIM_STAT_OK) {
    const char* detail = dkim_geterror(dkim);
    const Code code = st == DKIM_STAT_SYNTAX ? Code::kInvalidArgument : Code::kInternal;
    return Err(Status(code, std::string("DKIM signing failed: ") + dkim_getresultstr(st) +
                                (detail && *detail ? std::string(": ") + detail : "")));
  }
  // libopendkim folds with bare LF; the message uses CRLF.
  std::string out(kName);
  for (size_t i = 0; i < len; ++i) {
    if (header[i] == '\n' && (i == 0 || header[i - 1] != '\r')) out += '\r';
    out += static_cast<char>(header[i]);
  }
  out += "\r\n";
  return out;
}

Status DkimSigner::Sign(std::string& message) const {
  NUDGE_ASSIGN_OR_RETURN(std::string header, Signature(message));
  message.insert(0, header);
  return Status::Ok();
}

}  // namespace nudge::channel
