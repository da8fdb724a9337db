// Signed links: every tracking, unsubscribe and preference URL nudge puts in a message carries
// what it is for (the kind, workspace, contact, message, and the target URL or topic) and an
// HMAC over it, so nobody can make one for another contact, and a click redirect can only send
// people where nudge's own messages pointed (no open redirect).
//
// Tokens are URL-safe: base64url(claims) "." base64url(first 16 bytes of HMAC-SHA256).
// Thread-safe (immutable after construction).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/store.h"

namespace nudge::track {

enum class LinkKind : char {
  kOpen = 'o',         // the open pixel
  kClick = 'c',        // a click redirect; extra = the destination URL
  kUnsubscribe = 'u',  // one-click unsubscribe; extra = a topic, or "" for the channel
  kPreferences = 'p',  // the preference page
  kConfirm = 'k',      // double opt-in confirmation; extra = the channel
  kView = 'v',         // the message in a browser
  kImage = 'i',        // a personalized image; extra = the image template id
};

struct LinkClaims {
  LinkKind kind = LinkKind::kOpen;
  store::WorkspaceId workspace = 0;
  store::ContactId contact = 0;
  int64_t message = 0;  // the outbox message, 0 when none
  std::string channel = "email";
  std::string extra;
};

class LinkSigner {
 public:
  explicit LinkSigner(std::string secret) : secret_(std::move(secret)) {}

  std::string Sign(const LinkClaims& claims) const;
  // kPermissionDenied for a token that was not made with this secret or was altered;
  // kInvalidArgument for one that is not a token at all.
  Result<LinkClaims> Verify(std::string_view token) const;

 private:
  std::string secret_;
};

// The path (under the public URL) of a link: "/t/c/<token>".
std::string LinkPath(const LinkSigner& signer, const LinkClaims& claims);

// Whether a destination may be a click redirect: absolute http(s) URLs only (no javascript:,
// data:, protocol-relative or header-splitting tricks).
bool IsRedirectable(std::string_view url);

}  // namespace nudge::track

namespace nudge::track {

// Each workspace's link secret, made on first use and kept in the store (so every nudge node
// sharing the store signs alike). Thread-safe.
class SecretBook {
 public:
  explicit SecretBook(store::Store& store) : store_(store) {}
  Result<LinkSigner> SignerFor(store::WorkspaceId ws);

 private:
  store::Store& store_;
  std::mutex mutex_;
  std::map<store::WorkspaceId, std::string> secrets_;  // GUARDED_BY(mutex_)
};

}  // namespace nudge::track
