// List hygiene for contact imports: which column of an exported list is which contact field,
// which email domains are likely typos of a big mailbox provider, and which addresses belong
// to a role (info@, support@) rather than a person.
//
// Header mapping knows the column names of Mailchimp, HubSpot, Brevo, ActiveCampaign and
// spreadsheet exports ("Email Address", "E-mail", "FNAME", "Phone Number", "Country/Region",
// ...), compared case-insensitively ignoring spaces and punctuation. A column it does not know
// becomes a trait under a snake_case key ("MEMBER_RATING" -> "member_rating").
//
// Pure functions over immutable tables; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace nudge::profile {

// Where a column's values go.
enum class ColumnKind {
  kEmail,   // the contact's email (identifier)
  kPhone,   // the contact's phone (identifier)
  kUserId,  // the contact's user id (identifier)
  kTrait,   // a trait under `key`
  kTags,    // a list of tags ("a, b" or "\"a\",\"b\""): a trait `key` holding an array
  kIgnore,  // dropped (only through an explicit mapping to "-" or "ignore")
};

struct Column {
  std::string header;  // as written in the file
  ColumnKind kind = ColumnKind::kTrait;
  std::string key;     // "email", "phone", "user_id" or the trait key
  bool known = false;  // the header was recognised (else `key` is its snake_case form)
};

// The canonical key of a header nudge recognises ("Email Address" -> "email", "FNAME" ->
// "first_name", "Country/Region" -> "country"), or nullopt.
std::optional<std::string> CanonicalField(std::string_view header);

// "Lead Status" -> "lead_status", "MEMBER_RATING" -> "member_rating", "leadScore" ->
// "lead_score". ASCII letters are lowercased; other UTF-8 is kept; runs of anything else
// become one '_'. Empty when nothing is left.
std::string SnakeCase(std::string_view header);

// Maps a header row. `overrides` are "Header=field" pairs from the user, matched against the
// headers exactly after trimming (then case-insensitively); field is email, phone, user_id,
// tags, ignore (or "-"), or a trait key. The first column recognised as each identifier keeps
// it; later ones become traits under their own keys. Keys are unique ("email_2", ...); an
// empty header becomes "column_<n>" (1-based). kInvalidArgument (where = "--map") when an
// override is malformed or names no header.
Result<std::vector<Column>> MapHeaders(const std::vector<std::string>& headers,
                                       const std::vector<std::string>& overrides = {});

// The mailbox provider a domain is likely a typo of ("gmial.com" -> "gmail.com", "gmail.con"
// -> "gmail.com", "hotmial.com" -> "hotmail.com"), or nullopt for a well-formed provider
// domain, a known real domain close to one ("gmx.com", "mail.com", "ymail.com") and anything
// not close to a provider. Case-insensitive.
std::optional<std::string> SuggestDomain(std::string_view domain);

// True when the address's local part names a role, not a person: admin, info, sales, support,
// noreply/no-reply, postmaster, webmaster, abuse, billing, contact, hello, help, marketing,
// office, team, hr, jobs, careers and the like ("Info@", "no_reply+x@" too).
bool IsRoleAddress(std::string_view email);

// Splits a tags cell into tags: comma or semicolon separated, quotes and spaces trimmed,
// empty and repeated tags dropped ("\"VIP\",\"Newsletter\"" -> {"VIP", "Newsletter"}).
std::vector<std::string> SplitTags(std::string_view cell);

// Optimal string alignment (restricted Damerau-Levenshtein) distance: insertions, deletions,
// substitutions and transpositions of adjacent characters each cost one.
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace nudge::profile
