// DkimSigner: signs messages with DKIM (RFC 6376) through libopendkim: rsa-sha256,
// relaxed/relaxed canonicalization, the whole body.
//
// Signed header fields, when present in the message: From, To, Subject, Date, Message-ID,
// MIME-Version, Content-Type, Content-Transfer-Encoding, Reply-To, List-Unsubscribe,
// List-Unsubscribe-Post, Feedback-ID. From is also "oversigned" (listed once more than it
// appears), so a second From added on the way invalidates the signature.
//
// The signature's t= tag comes from the system time (libopendkim reads it itself).
//
// A DkimSigner owns its library handle and key. Sign/Signature are thread-safe (each call
// uses its own signing context); create one signer per (domain, selector, key) at start-up.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"

namespace nudge::channel {

struct DkimConfig {
  std::string domain;    // d=, e.g. "acme.test"
  std::string selector;  // s=, e.g. "s1": the key is published at s1._domainkey.acme.test
  std::string key_file;  // PEM file holding the RSA private key
};

class DkimSigner {
 public:
  // From a PEM private key in memory. Errors (kInvalidArgument): not PEM, not a private key,
  // not RSA, shorter than 1024 bits; an empty or malformed domain or selector.
  static Result<std::unique_ptr<DkimSigner>> Create(std::string domain, std::string selector,
                                                    std::string_view private_key_pem);
  // Reads config.key_file; an unreadable file is kInvalidArgument naming the path and why.
  static Result<std::unique_ptr<DkimSigner>> FromConfig(const DkimConfig& config);

  ~DkimSigner();
  DkimSigner(const DkimSigner&) = delete;
  DkimSigner& operator=(const DkimSigner&) = delete;

  // The "DKIM-Signature: ...\r\n" header field (folded) for a complete message with CRLF line
  // endings, as BuildMessage makes it. kInvalidArgument when the message cannot be parsed
  // (no header/body separation), kInternal when signing fails.
  Result<std::string> Signature(std::string_view message) const;

  // Prepends the signature to message.
  Status Sign(std::string& message) const;

  // The DNS TXT record that publishes the public key: "v=DKIM1; k=rsa; p=<base64>".
  const std::string& PublicKeyRecord() const { return public_record_; }
  const std::string& domain() const { return domain_; }
  const std::string& selector() const { return selector_; }

 private:
  struct Lib;
  DkimSigner() = default;

  std::string domain_;
  std::string selector_;
  std::string key_pem_;
  std::string public_record_;
  std::unique_ptr<Lib> lib_;
};

}  // namespace nudge::channel
