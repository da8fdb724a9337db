// MaildirReader: takes bounces and complaint reports out of a maildir that an MTA delivers
// them to (Postfix `home_mailbox = Maildir/`, Dovecot LDA, fetchmail/getmail, ...).
//
// Poll() reads up to `max_files_per_poll` files from `<dir>/new/` in name order (maildir names
// begin with the delivery time), parses each with ParseReport and hands the result to the
// handler. Then it moves the file, never deleting it:
//   - parsed and the handler returned Ok  -> `<dir>/cur/<name>:2,S` (read, as a mail client
//     would mark it);
//   - not a report ParseReport understands, too large, or unreadable -> `<dir>/failed/<name>`
//     (created when needed), for an operator to look at; the reason is in the stats;
//   - the handler failed -> left in new/ and Poll() stops and returns the handler's error,
//     so the file is offered again at the next poll.
// A move never replaces an existing file: a clash adds ".1", ".2", ... to the name (before
// the ":2," part in cur/).
// Files starting with '.' and anything that is not a regular file are skipped; tmp/ is never
// read (the maildir protocol completes deliveries there before renaming them into new/).
//
// Delivery to the handler is at least once: a crash between the handler and the move, or two
// readers polling one maildir, can hand the same file twice; suppression is idempotent, and
// a counter of soft bounces should key on (message_id, recipient) if that matters.
// Not thread-safe: one Poll() at a time per reader. The handler runs on the calling thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "channel/feedback/report.h"

namespace nudge::channel {

struct MaildirOptions {
  size_t max_files_per_poll = 100;
  ReportLimits limits;  // max_message_bytes also bounds what is read from each file
};

struct MaildirStats {
  size_t delivered = 0;  // parsed, handed to the handler, moved to cur/
  // Moved to failed/, with the reason (file name, Status).
  std::vector<std::pair<std::string, Status>> failed;
  size_t remaining = 0;  // files still in new/ beyond this poll's limit (0 when all were seen)
};

// Receives one message's feedback (never empty) and the file's name inside new/.
using MaildirHandler =
    std::function<Status(const std::string& file_name, const std::vector<Feedback>& feedback)>;

// Receives a readable message that is not a report (an unsubscribe mailed to the
// List-Unsubscribe address, say): true when it was taken (moved to cur/), false to file it in
// failed/ as any other non-report.
using MaildirOtherHandler =
    std::function<bool(const std::string& file_name, const std::string& message)>;

class MaildirReader {
 public:
  // `dir` is the maildir's root (holding new/ and cur/).
  explicit MaildirReader(std::string dir, MaildirOptions options = {});

  // Errors: kNotFound when <dir>/new does not exist, kInternal when it cannot be listed or a
  // file cannot be moved (the file stays where it was), the handler's error (with where =
  // the file name) when it fails.
  Result<MaildirStats> Poll(const MaildirHandler& handler,
                            const MaildirOtherHandler& other = nullptr);

 private:
  std::string dir_;
  MaildirOptions options_;
};

}  // namespace nudge::channel
