// Transparent huge pages for the heap of a long-running process.
//
// Contact state lives in the heap, a few hundred bytes to a few kilobytes per contact, and an
// event touches a random contact among millions: with 4 KiB pages nearly every such access
// also misses the TLB and walks the page tables. glibc's malloc backs its heap with 2 MiB
// pages when the tunable glibc.malloc.hugetlb=1 is set, and tunables are read only when a
// program starts, so the server re-executes itself once with it set (the same process id).
// The kernel still decides: with transparent huge pages set to "never" nothing changes.
// NUDGE_HUGE_PAGES=0 turns this off.
#pragma once

namespace nudge::core {

// Re-executes /proc/self/exe with argv and GLIBC_TUNABLES including glibc.malloc.hugetlb=1,
// unless that tunable is already set or NUDGE_HUGE_PAGES=0. Returns only when it did not
// re-execute (or exec failed: the program goes on with small pages).
void ReexecWithHugePages(char** argv);

// Whether this process's malloc was started with huge pages asked for, and how many bytes of
// anonymous memory the kernel backs with them now (/proc/self/smaps_rollup; 0 when unknown).
bool HugePagesRequested();
long long AnonHugePageBytes();

}  // namespace nudge::core
