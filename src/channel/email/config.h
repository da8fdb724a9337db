// The `channels.email` section of nudge.yaml, read into an EmailConfig:
//
//   channels:
//     email:
//       from: "Acme <hello@acme.test>"
//       postal_address: "Acme Inc, 1 Main St, Springfield"
//       relays:                      # by priority; failed over in this order
//         - { name: primary, host: 127.0.0.1, port: 2525, tls: none, pool: 8, rate: 0 }
//         - name: backup
//           host: smtp.example.net
//           port: 587                # default: 25 (none), 587 (starttls), 465 (implicit)
//           tls: starttls            # none | starttls | implicit
//           username: acme
//           password_env: NUDGE_SMTP_PASSWORD   # the password comes from this variable
//           auth: login              # plain | login; default: PLAIN when offered, else LOGIN
//           tls_verify: true         # check the certificate (default true)
//           ca_file: /etc/ssl/relay-ca.pem      # default: the system's roots
//           transactional_reserved: 1           # connections kept for transactional mail
//       dkim: { domain: acme.test, selector: s1, key_file: dkim.pem }
//       domain_concurrency: 20       # messages in flight per recipient domain (0 = no limit)
//       helo_name: mail.acme.test    # EHLO name (default: this host's name)
//
// Unknown keys are refused. Errors are kInvalidArgument naming the key
// ("channels.email.relays[1].port: ...") with where = "file:line:column".
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "channel/email/dkim.h"
#include "channel/email/message.h"
#include "channel/email/sender.h"
#include "core/result.h"

namespace YAML {
class Node;
}
namespace nudge::core {
struct YamlDoc;
}

namespace nudge::channel {

struct EmailConfig {
  Mailbox from;
  std::string postal_address;
  std::vector<RelayConfig> relays;
  std::optional<DkimConfig> dkim;  // key_file resolved against EmailConfigContext::base_dir
  int domain_concurrency = 0;
  std::string helo_name;

  // The sender settings this configuration asks for (metrics and timeouts left at defaults).
  SenderOptions ToSenderOptions() const;
};

struct EmailConfigContext {
  // Relative key_file and ca_file paths are taken from here (the configuration file's
  // directory); empty: the working directory.
  std::string base_dir;
  // Looks up password_env; default: the process environment.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  // Names the section in errors.
  std::string path = "channels.email";
};

// Reads the mapping `email` of doc.
Result<EmailConfig> ParseEmailConfig(const core::YamlDoc& doc, const YAML::Node& email,
                                     const EmailConfigContext& context = {});

}  // namespace nudge::channel
