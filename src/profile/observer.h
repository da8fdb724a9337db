// ContactObserver: told of every change to contacts, inside the store write that makes the
// change durable, on the writer thread. Segments, scores, stages (and journeys) keep their
// state current through it; whatever an observer writes commits with the change itself.
// An observer's error fails the write (and rolls it back).
#pragma once

#include <string_view>

#include "core/status.h"
#include "store/store.h"

namespace nudge::profile {

class ContactObserver {
 public:
  virtual ~ContactObserver() = default;
  virtual Status OnContactCreated(store::WriteTxn& txn, const store::Contact& contact) = 0;
  // The contact's traits (or email, phone, tags) changed; `contact` is the new state and
  // `previous_traits` the traits before (JSON; empty when the caller does not know them).
  virtual Status OnContactChanged(store::WriteTxn& txn, const store::Contact& contact,
                                  std::string_view previous_traits) = 0;
  // An event was stored for the contact (after any trait change it carried).
  virtual Status OnEvent(store::WriteTxn& txn, const store::Event& event) = 0;
  virtual Status OnContactsMerged(store::WriteTxn& txn, store::ContactId from,
                                  store::ContactId into) = 0;
  virtual Status OnContactDeleted(store::WriteTxn& txn, store::ContactId id) = 0;
  // A message for this contact is about to be stored, and its OnEvent follows: the observer
  // may ask the CPU to fetch the contact's state meanwhile (it is cold for a random contact
  // among millions). A hint: no effect on what happens, never blocks.
  virtual void Prefetch(store::ContactId /*id*/) {}
};

}  // namespace nudge::profile
