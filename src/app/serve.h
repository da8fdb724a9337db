// `nudge serve`: opens the store, bootstraps the default workspace, serves HTTP until
// SIGINT/SIGTERM, then drains: no new connections, in-flight requests answered after their
// commit, the store closed cleanly.
#pragma once

#include "app/config.h"

namespace nudge::app {

// Returns the process exit code.
int RunServe(const Flags& flags);

}  // namespace nudge::app
