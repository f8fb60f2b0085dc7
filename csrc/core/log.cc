// See log.h.
#include "core/log.h"

#include <cstdio>
#include <mutex>

namespace unet_rt {

namespace {
std::mutex g_mu;
LogHook g_hook = nullptr;
void* g_user = nullptr;
LogLevel g_min = LogLevel::Warning;
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
  }
  return "?";
}
}  // namespace

void set_log_hook(LogHook hook, void* user, LogLevel min_level) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_hook = hook;
  g_user = user;
  g_min = min_level;
}

void log(LogLevel level, const std::string& message) {
  LogHook hook;
  void* user;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (level < g_min) return;
    hook = g_hook;
    user = g_user;
  }
  if (hook) hook(user, int(level), message.c_str());
  else std::fprintf(stderr, "unet-rt: %s: %s\n", level_name(level), message.c_str());
}

}  // namespace unet_rt
