// `nudge import contacts FILE.csv`: imports a contact list exported from Mailchimp, HubSpot or a
// spreadsheet through the admin API (POST /api/v1/contacts/import), in batches.
//
// The file is streamed: at most one batch of rows is held in memory, whatever the file's size.
// Columns are mapped by profile::MapHeaders (unknown ones become traits); rows that cannot be
// imported (a malformed CSV record, a ragged row, an invalid email or phone, no identifier, or
// the server's refusal) go to a rejects CSV with the line and the reason; likely domain typos
// and role addresses are imported but listed in a flagged CSV (or rejected on request). Both
// files are written under a temporary name and renamed at the end, so a failed run leaves no
// half-written file. Duplicates inside the file and matches with existing contacts are resolved
// by the server (user id, then normalized email, then phone).
//
// Exit codes: 0 the import ran (rejected rows included), 1 the server failed or could not be
// reached, 2 bad usage (no such file, no key, a file that cannot be read as CSV at all).
#pragma once

namespace CLI {
class App;
}  // namespace CLI

namespace nudge::cli {

// Registers `import contacts` on `app`; the command's callback stores its exit code in
// `exit_code`, which must outlive the parse.
void AddImportCommand(CLI::App& app, int& exit_code);

}  // namespace nudge::cli
