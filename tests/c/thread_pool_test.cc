// The thread pool's failure behaviour (csrc/core/thread_pool.h), run by tests/test_robust.py:
//   thread_pool_test start-failure | worker-throws | caller-throws | fork | fork-mutex | clamp
// Prints "OK <case>" and exits 0 on success; a hang is caught by the caller's timeout (and alarm()).
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/log.h"
#include "core/thread_pool.h"

using unet_rt::ThreadPool;

static int fail(const char* what) {
  std::fprintf(stderr, "FAIL %s\n", what);
  return 1;
}

static std::string g_log;
static void capture(void*, int, const char* msg) { g_log += msg; }

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: thread_pool_test CASE");
  alarm(60);
  const std::string c = argv[1];
  if (c == "start-failure") {
    // Every new thread asks for a 1 TiB stack: creation fails (as under a small ulimit -v).
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (pthread_attr_setstacksize(&attr, size_t(1) << 40) != 0) return fail("setstacksize");
    if (pthread_setattr_default_np(&attr) != 0) return fail("setattr_default_np");
    try {
      ThreadPool pool(4);
      return fail("no exception");
    } catch (const std::runtime_error& e) {
      if (!std::strstr(e.what(), "cannot start 4 threads")) return fail(e.what());
      std::printf("message: %s\n", e.what());
    }
  } else if (c == "worker-throws" || c == "caller-throws") {
    ThreadPool pool(4);
    const bool on_worker = c == "worker-throws";
    std::atomic<int> running{0}, ran{0};
    for (int round = 0; round < 20; ++round) {
      try {
        pool.parallel_for(1000, [&](int64_t i) {
          ++running;
          ++ran;
          usleep(100);
          const bool worker = ThreadPool::thread_index() != 0;
          --running;
          if (i >= 8 && worker == on_worker) throw std::runtime_error("item " + std::to_string(i));
        });
        // The calling thread may drain everything before a worker wakes (caller-throws always
        // throws: the caller takes items too); only a worker-throws round may finish cleanly.
        if (!on_worker) return fail("caller-throws: no exception");
      } catch (const std::runtime_error& e) {
        if (std::strncmp(e.what(), "item ", 5) != 0) return fail(e.what());
        if (running.load() != 0) return fail("a thread still runs the job after parallel_for threw");
      }
    }
    // the pool works afterwards
    std::atomic<int64_t> sum{0};
    pool.parallel_for(1000, [&](int64_t i) { sum += i; });
    if (sum.load() != 999 * 1000 / 2) return fail("pool broken after an exception");
  } else if (c == "fork") {
    ThreadPool pool(4);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(1000, [&](int64_t i) { sum += i; });
    pid_t pid = fork();
    if (pid == 0) {
      std::atomic<int64_t> s2{0};
      pool.parallel_for(1000, [&](int64_t i) { s2 += i; });  // no workers in the child: runs here
      _exit(s2.load() == 999 * 1000 / 2 ? 0 : 3);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fail("child");
    pid = fork();
    if (pid == 0) {
      ThreadPool* p = new ThreadPool(3);  // a pool made in the child works normally
      std::atomic<int64_t> s3{0};
      p->parallel_for(100, [&](int64_t i) { s3 += i; });
      delete p;
      _exit(s3.load() == 99 * 100 / 2 ? 0 : 3);
    }
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fail("child 2");
    pid = fork();
    if (pid == 0) {
      pool.~ThreadPool();  // destroying the parent's pool in the child must not block
      _exit(0);
    }
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fail("child 3");
  } else if (c == "fork-mutex") {
    // A ForkSafeMutex held by another thread when fork() is called: fork waits for its release, and
    // the child can take it (a plain std::mutex stays locked in the child forever).
    unet_rt::ForkSafeMutex m;
    std::atomic<bool> held{false};
    std::thread t([&] {
      std::lock_guard<unet_rt::ForkSafeMutex> lk(m);
      held = true;
      usleep(300 * 1000);
    });
    while (!held) usleep(1000);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(10);  // a hang ends the child with SIGALRM
      m.lock();
      m.unlock();
      _exit(0);
    }
    t.join();
    m.lock();  // the parent's copy is usable too
    m.unlock();
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fail("child could not take the mutex");
  } else if (c == "clamp") {
    unet_rt::set_log_hook(capture, nullptr);
    ThreadPool pool(100000);
    if (pool.size() != ThreadPool::max_threads()) return fail("not clamped");
    if (g_log.find("threads=100000") == std::string::npos) return fail(("no message: " + g_log).c_str());
    std::printf("size %d, message: %s\n", pool.size(), g_log.c_str());
  } else {
    return fail("unknown case");
  }
  std::printf("OK %s\n", c.c_str());
  return 0;
}
