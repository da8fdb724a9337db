#include "profile/import.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "profile/normalize.h"
#include "profile/traits.h"

namespace nudge::profile {
namespace {

using nlohmann::json;
using store::Contact;

struct Normalized {
  std::optional<std::string> email;
  std::optional<std::string> phone;
  std::string traits;
};

// Validates the row's identifiers; on success the row's traits carry the originals.
Result<Normalized> NormalizeRow(const ImportRow& row, const ProfileOptions& options) {
  Normalized n;
  json traits = json::parse(row.traits, nullptr, false);
  if (traits.is_discarded() || !traits.is_object())
    return Err(Status::Invalid("traits must be a JSON object"));
  if (row.email) {
    auto e = NormalizeEmail(*row.email);
    if (!e) return Err(Status::Invalid("invalid email: " + e.error().message()));
    n.email = std::move(*e);
    traits["email"] = *row.email;
  }
  if (row.phone) {
    std::string region = options.default_region;
    if (auto c = traits.find("country");
        c != traits.end() && c->is_string() && c->get<std::string>().size() == 2)
      region = c->get<std::string>();
    auto p = NormalizePhone(*row.phone, region);
    if (!p) return Err(Status::Invalid("invalid phone: " + p.error().message()));
    n.phone = std::move(*p);
    traits["phone"] = *row.phone;
  }
  if (!row.user_id && !n.email && !n.phone)
    return Err(Status::Invalid("the row has no email, phone or user id"));
  n.traits = traits.dump(-1, ' ', false, json::error_handler_t::replace);
  return n;
}

// Emails as the store matches them: without regard to case (contacts_email is on lower(email)).
bool SameEmail(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

}  // namespace

std::string_view ImportOutcomeName(ImportOutcome outcome) {
  switch (outcome) {
    case ImportOutcome::kCreated:
      return "created";
    case ImportOutcome::kUpdated:
      return "updated";
    case ImportOutcome::kMerged:
      return "merged";
    case ImportOutcome::kRejected:
      return "rejected";
  }
  return "rejected";
}

Result<std::vector<ImportRowResult>> ImportContacts(store::WriteTxn& txn, store::WorkspaceId ws,
                                                    const ImportRequest& request,
                                                    const ProfileOptions& options, core::Millis now,
                                                    ContactObserver* observer) {
  std::vector<ImportRowResult> results;
  results.reserve(request.rows.size());
  const std::string tags = json(request.tags).dump();
  for (const ImportRow& row : request.rows) {
    ImportRowResult r;
    r.line = row.line;
    auto n = NormalizeRow(row, options);
    if (!n) {
      r.reason = n.error().message();
      results.push_back(std::move(r));
      continue;
    }
    std::optional<Contact> found;
    if (row.user_id) {
      NUDGE_ASSIGN_OR_RETURN(found, txn.FindContactByUserId(ws, *row.user_id));
    }
    if (!found && n->email) {
      NUDGE_ASSIGN_OR_RETURN(found, txn.FindContactByEmail(ws, *n->email));
    }
    if (!found && n->phone) {
      NUDGE_ASSIGN_OR_RETURN(found, txn.FindContactByPhone(ws, *n->phone));
      // A phone is shared by a household or an office switchboard: it names the contact only
      // when the row or the contact has no email to tell them apart. A row with another email
      // is another person, who keeps the phone too.
      if (found && n->email && found->email && !SameEmail(*found->email, *n->email)) found.reset();
    }

    if (found && row.user_id && found->user_id && *found->user_id != *row.user_id) {
      r.reason = "the email or phone belongs to the contact with user id '" + *found->user_id + "'";
      results.push_back(std::move(r));
      continue;
    }
    if (found) {
      Contact& c = *found;
      NUDGE_ASSIGN_OR_RETURN(c.traits, MergeTraits(c.traits, n->traits));
      NUDGE_ASSIGN_OR_RETURN(c.tags, UnionTags(c.tags, tags));
      if (!c.user_id) c.user_id = row.user_id;
      if (!c.source) c.source = request.source;
      DeriveContactFields(c, options);
      NUDGE_TRY(txn.UpdateContact(c));
      if (observer) NUDGE_TRY(observer->OnContactChanged(txn, c, ""));
      r.outcome =
          c.import_id == request.import_id ? ImportOutcome::kMerged : ImportOutcome::kUpdated;
      r.contact = c.id;
    } else {
      Contact c;
      c.workspace = ws;
      c.user_id = row.user_id;
      c.traits = n->traits;
      c.tags = tags;
      c.source = request.source;
      c.import_id = request.import_id;
      c.created_at = now;
      c.last_seen_at = now;
      DeriveContactFields(c, options);
      NUDGE_ASSIGN_OR_RETURN(c.id, txn.InsertContact(c));
      if (observer) NUDGE_TRY(observer->OnContactCreated(txn, c));
      r.outcome = ImportOutcome::kCreated;
      r.contact = c.id;
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace nudge::profile
