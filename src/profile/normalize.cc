#include "profile/normalize.h"

#include <phonenumbers/phonenumberutil.h>

#include <algorithm>
#include <cctype>

namespace nudge::profile {
namespace {

std::string_view Trim(std::string_view s) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string Upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  return out;
}

}  // namespace

Result<std::string> NormalizeEmail(std::string_view email) {
  email = Trim(email);
  if (email.size() >= 7 && std::equal(email.begin(), email.begin() + 7,
                                      "mailto:", [](char a, char b) { return Lower(a) == b; }))
    email.remove_prefix(7);
  if (email.empty()) return Err(Status::Invalid("the email address is empty"));
  const size_t at = email.rfind('@');
  if (at == std::string_view::npos) return Err(Status::Invalid("the email address has no '@'"));
  std::string_view local = email.substr(0, at), domain = email.substr(at + 1);
  if (local.empty()) return Err(Status::Invalid("the email address has nothing before '@'"));
  if (local.size() > 64)
    return Err(Status::Invalid("the part before '@' is longer than 64 characters"));
  if (domain.empty()) return Err(Status::Invalid("the email address has no domain after '@'"));
  if (domain.size() > 253) return Err(Status::Invalid("the domain is longer than 253 characters"));
  for (char c : email) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || c == '<' || c == '>' || c == ',' || c == ';' || c == '(' || c == ')' ||
        c == '[' || c == ']' || c == '\\' || c == '"')
      return Err(Status::Invalid(
          std::string("the email address contains '") +
          (u <= 0x20 ? std::string("a space or control character") : std::string(1, c)) + "'"));
  }
  if (local.find('@') != std::string_view::npos)
    return Err(Status::Invalid("the email address has more than one '@'"));
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
    return Err(Status::Invalid("the part before '@' has a misplaced dot"));
  if (domain.find('.') == std::string_view::npos)
    return Err(Status::Invalid("the domain '" + std::string(domain) + "' has no dot"));
  if (domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos || domain.front() == '-')
    return Err(Status::Invalid("the domain '" + std::string(domain) + "' is malformed"));
  std::string out(local);
  out += '@';
  for (char c : domain) out += Lower(c);
  return out;
}

std::string EmailKey(std::string_view normalized_email) {
  std::string out(normalized_email);
  std::transform(out.begin(), out.end(), out.begin(), Lower);
  return out;
}

Result<std::string> NormalizePhone(std::string_view phone, std::string_view region) {
  using i18n::phonenumbers::PhoneNumber;
  using i18n::phonenumbers::PhoneNumberUtil;
  phone = Trim(phone);
  if (phone.empty()) return Err(Status::Invalid("the phone number is empty"));
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  const std::string upper_region = Upper(region);
  const auto rc =
      util.Parse(std::string(phone), upper_region.empty() ? "ZZ" : upper_region, &number);
  switch (rc) {
    case PhoneNumberUtil::NO_PARSING_ERROR:
      break;
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
      return Err(
          Status::Invalid("the phone number has no valid country code (write it as +<country> "
                          "or set a default region)"));
    case PhoneNumberUtil::NOT_A_NUMBER:
      return Err(Status::Invalid("the phone number is not a number"));
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN:
      return Err(Status::Invalid("the phone number is too short"));
    case PhoneNumberUtil::TOO_LONG_NSN:
      return Err(Status::Invalid("the phone number is too long"));
  }
  if (!util.IsValidNumber(number))
    return Err(Status::Invalid("the phone number is not a valid number for its country"));
  std::string out;
  util.Format(number, PhoneNumberUtil::E164, &out);
  return out;
}

bool IsPhoneRegion(std::string_view region) {
  using i18n::phonenumbers::PhoneNumberUtil;
  return region.size() == 2 &&
         PhoneNumberUtil::GetInstance()->GetCountryCodeForRegion(Upper(region)) != 0;
}

}  // namespace nudge::profile
