#include "core/huge_pages.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace nudge::core {
namespace {

constexpr std::string_view kTunable = "glibc.malloc.hugetlb";
constexpr std::string_view kTunableOn = "glibc.malloc.hugetlb=1";
constexpr const char* kReexecuted = "NUDGE_HUGE_PAGES_REEXECUTED";

}  // namespace

bool HugePagesRequested() {
  const char* t = std::getenv("GLIBC_TUNABLES");
  return t && std::string_view(t).find(kTunableOn) != std::string_view::npos;
}

void ReexecWithHugePages(char** argv) {
  // The second execution: never a third, whatever glibc made of the variable. The kernel
  // names a process after the file it executes ("exe" here); the first execution's name came
  // along in the guard, so ps, top, pgrep and the thread names show "nudge" again.
  if (const char* name = std::getenv(kReexecuted)) {
    if (*name) prctl(PR_SET_NAME, name, 0, 0, 0);
    unsetenv(kReexecuted);
    return;
  }
  if (const char* off = std::getenv("NUDGE_HUGE_PAGES");
      off && (std::string_view(off) == "0" || std::string_view(off) == "false" ||
              std::string_view(off) == "no"))
    return;
  const char* current = std::getenv("GLIBC_TUNABLES");
  const std::optional<std::string> original =
      current ? std::optional<std::string>(current) : std::nullopt;
  std::string tunables = original.value_or("");
  // Set already: by the first execution, or by whoever started us (who then decides).
  if (tunables.find(kTunable) != std::string::npos) return;
  if (!tunables.empty()) tunables += ':';
  tunables += kTunableOn;
  if (setenv("GLIBC_TUNABLES", tunables.c_str(), 1) != 0) return;
  std::string name;
  std::getline(std::ifstream("/proc/self/comm"), name);
  setenv(kReexecuted, name.c_str(), 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): go on as we are, without the variable for our children either.
  unsetenv(kReexecuted);
  if (original) {
    setenv("GLIBC_TUNABLES", original->c_str(), 1);
  } else {
    unsetenv("GLIBC_TUNABLES");
  }
}

long long AnonHugePageBytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("AnonHugePages:")) continue;
    std::istringstream fields(line.substr(14));
    long long kb = 0;
    fields >> kb;
    return kb * 1024;
  }
  return 0;
}

}  // namespace nudge::core
