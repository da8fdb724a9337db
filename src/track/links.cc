#include "track/links.h"

#include "core/crypto.h"

namespace nudge::track {
namespace {

constexpr size_t kMacBytes = 16;

std::string Payload(const LinkClaims& c) {
  // kind|ws|contact|message|channel|extra ; extra last so it may hold any character.
  std::string p(1, static_cast<char>(c.kind));
  p += '|' + std::to_string(c.workspace) + '|' + std::to_string(c.contact) + '|' +
       std::to_string(c.message) + '|' + c.channel + '|' + c.extra;
  return p;
}

bool ParseInt(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    out = out * 10 + (ch - '0');
  }
  return true;
}

}  // namespace

std::string LinkSigner::Sign(const LinkClaims& claims) const {
  const std::string payload = Payload(claims);
  const std::string mac = core::HmacSha256(secret_, payload).substr(0, kMacBytes);
  return core::Base64UrlEncode(payload) + "." + core::Base64UrlEncode(mac);
}

Result<LinkClaims> LinkSigner::Verify(std::string_view token) const {
  const auto dot = token.rfind('.');
  if (dot == std::string_view::npos || token.size() > 8192)
    return Err(Status::Invalid("not a link token"));
  auto payload = core::Base64UrlDecode(token.substr(0, dot));
  auto mac = core::Base64UrlDecode(token.substr(dot + 1));
  if (!payload || !mac) return Err(Status::Invalid("not a link token"));
  const std::string want = core::HmacSha256(secret_, *payload).substr(0, kMacBytes);
  if (!core::ConstantTimeEquals(*mac, want))
    return Err(
        Status(Code::kPermissionDenied, "this link was not made by this nudge, or was altered"));
  // Signed by us: the format is ours, but stay careful anyway.
  LinkClaims c;
  std::string_view rest = *payload;
  if (rest.size() < 2 || rest[1] != '|') return Err(Status::Invalid("malformed link"));
  c.kind = static_cast<LinkKind>(rest[0]);
  rest.remove_prefix(2);
  int64_t fields[3];
  for (int64_t& f : fields) {
    const auto bar = rest.find('|');
    if (bar == std::string_view::npos || !ParseInt(rest.substr(0, bar), f))
      return Err(Status::Invalid("malformed link"));
    rest.remove_prefix(bar + 1);
  }
  c.workspace = fields[0];
  c.contact = fields[1];
  c.message = fields[2];
  const auto bar = rest.find('|');
  if (bar == std::string_view::npos) return Err(Status::Invalid("malformed link"));
  c.channel = std::string(rest.substr(0, bar));
  c.extra = std::string(rest.substr(bar + 1));
  return c;
}

std::string LinkPath(const LinkSigner& signer, const LinkClaims& claims) {
  return std::string("/t/") + static_cast<char>(claims.kind) + "/" + signer.Sign(claims);
}

bool IsRedirectable(std::string_view url) {
  const bool http = url.rfind("http://", 0) == 0;
  const bool https = url.rfind("https://", 0) == 0;
  if (!http && !https) return false;
  const std::string_view rest = url.substr(https ? 8 : 7);
  if (rest.empty() || rest.front() == '/' || rest.front() == '\\') return false;
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || c == '"' || c == '<' || c == '>' || c == '\\')
      return false;
  return true;
}

Result<LinkSigner> SecretBook::SignerFor(store::WorkspaceId ws) {
  std::lock_guard lock(mutex_);
  auto it = secrets_.find(ws);
  if (it != secrets_.end()) return LinkSigner(it->second);
  std::string secret;
  NUDGE_TRY(store_.WriteSync([&](store::WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(auto existing, t.GetSecret(ws, "links"));
    if (existing) {
      secret = *existing;
      return Status::Ok();
    }
    secret = core::RandomToken(48);
    return t.PutSecret(ws, "links", secret);
  }));
  secrets_[ws] = secret;
  return LinkSigner(secret);
}

}  // namespace nudge::track
