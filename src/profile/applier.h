// Applier: applies accepted Segment messages to contact profiles inside a store write.
//
// For each message, in order: skip it if its messageId was stored before (deduplication per
// workspace); find or create the contact by userId / anonymousId, merging an anonymous
// visitor's history into the known contact when a message ties the two together (any call
// carrying both ids, and alias); merge identify traits (null removes a trait) and keep the
// normalized email (trimmed, domain lowercased) and phone (E.164) beside the originals;
// store the event on the contact (its first/last seen times follow from its events' times).
//
// An identify that gives a known user an email which a contact without a user id already has
// (an imported list member, say) merges that contact into the user's.
//
// Thread-compatible: const methods, no shared state; call it from the store's writer thread.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "ingest/message.h"
#include "profile/observer.h"
#include "store/store.h"

namespace nudge::profile {

struct ProfileOptions {
  // The country assumed for phone numbers written without a country code, when the contact
  // has no `country` trait naming one.
  std::string default_region = "US";
};

struct AppliedEvent {
  int64_t event_id = 0;
  store::ContactId contact = 0;
  const ingest::Message* message = nullptr;  // borrowed from the Apply call's input
};

struct ApplyResult {
  size_t accepted = 0;    // stored now
  size_t duplicates = 0;  // stored before; skipped
  size_t contacts_created = 0;
  size_t contacts_merged = 0;
  std::vector<AppliedEvent> events;
};

class Applier {
 public:
  // `observer` (may be null; not owned) is told of each change inside the same write.
  explicit Applier(ProfileOptions options, ContactObserver* observer = nullptr)
      : options_(std::move(options)), observer_(observer) {}

  Result<ApplyResult> Apply(store::WriteTxn& txn, store::WorkspaceId ws,
                            const std::vector<ingest::Message>& messages) const;

  const ProfileOptions& options() const { return options_; }
  ContactObserver* observer() const { return observer_; }

 private:
  ProfileOptions options_;
  ContactObserver* observer_;
};

// Sets contact.email and contact.phone from the "email" and "phone" traits (normalized;
// left empty when the trait is missing or invalid). The traits themselves are untouched.
void DeriveContactFields(store::Contact& contact, const ProfileOptions& options);

// Folds `from` into `into` (fields only: `into` wins, `from` fills the gaps; tags unite;
// the earliest creation and the latest activity are kept).
Status MergeContactFields(store::Contact& into, const store::Contact& from);

}  // namespace nudge::profile
