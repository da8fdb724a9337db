// Normalizing the two identifiers marketing lives on: email addresses and phone numbers.
// The originals stay in the contact's traits; the normalized forms are what nudge matches,
// deduplicates and sends to. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace nudge::profile {

// Trims surrounding whitespace and lowercases the domain ("  Ann@Example.COM " ->
// "Ann@example.com"); the local part keeps its case, as RFC 5321 allows servers to care.
// Errors (kInvalidArgument) say what is wrong: no '@', empty local part, no dot in the
// domain, spaces, and so on.
Result<std::string> NormalizeEmail(std::string_view email);

// The key two addresses are compared by: the normalized address, lowercased.
std::string EmailKey(std::string_view normalized_email);

// E.164 ("+14155552671") via libphonenumber. `region` is the ISO 3166 country assumed for
// numbers written without a country code ("US", "DE"). Errors say why the number is not one.
Result<std::string> NormalizePhone(std::string_view phone, std::string_view region);

// Whether libphonenumber knows `region` ("US", "de") as a country whose numbers it can read.
bool IsPhoneRegion(std::string_view region);

}  // namespace nudge::profile
