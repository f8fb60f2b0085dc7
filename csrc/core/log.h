// Diagnostics of the native core (docs/architecture.md, "Error model"): errors are exceptions;
// what is worth telling but not an error (a clamped option, a fallback) goes through log().
// Default sink: one line on stderr ("unet-rt: warning: ..."); the C API (unet_rt_set_log_hook)
// replaces it, e.g. to route messages into an acquisition program's own log.
#pragma once
#include <string>

namespace unet_rt {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };

// The user pointer given with the hook, the level, a NUL-terminated UTF-8 message (the C API's
// unet_rt_log_fn). Called on the thread that logs; must not throw; may run on several threads at once.
using LogHook = void (*)(void* user, int level, const char* message);

// nullptr restores the default (stderr). Messages below `min_level` are dropped (default Warning).
void set_log_hook(LogHook hook, void* user, LogLevel min_level = LogLevel::Warning);
void log(LogLevel level, const std::string& message);

}  // namespace unet_rt
