// See thread_pool.h.
#include "core/thread_pool.h"

#if !defined(_WIN32)
#include <pthread.h>  // pthread_atfork (no fork() on Windows: ForkSafeMutex is a plain mutex there)
#endif

#include <algorithm>
#include <stdexcept>
#include <string>
#include <system_error>

#include "core/log.h"
#include "core/platform.h"

namespace unet_rt {

struct ThreadPool::Shared {
  std::vector<std::thread> workers;
  std::mutex m;
  std::condition_variable cv_work, cv_done;
  uint64_t generation = 0;
  int pending = 0;
  bool stop = false;
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;  // the first exception of the current job (under m)

  // Runs items until none is left; an exception stops the hand-out for every thread.
  void drain() {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      try {
        (*fn)(i);
      } catch (...) {
        next.store(n, std::memory_order_relaxed);
        std::lock_guard<std::mutex> lk(m);
        if (!error) error = std::current_exception();
        return;
      }
    }
  }
};

static thread_local int t_index = 0;
int ThreadPool::thread_index() { return t_index; }

int ThreadPool::max_threads() {
  unsigned hw = std::thread::hardware_concurrency();
  return kMaxThreadsPerCpu * int(hw ? hw : 1);
}

ThreadPool::ThreadPool(int threads) : pid_(platform::process_id()), s_(new Shared) {
  unsigned hw = std::thread::hardware_concurrency();
  if (threads <= 0) threads = int(hw ? hw : 1);
  if (threads > max_threads()) {
    log(LogLevel::Warning, "threads=" + std::to_string(threads) + " is more than " + std::to_string(kMaxThreadsPerCpu) +
                               " x the " + std::to_string(hw ? hw : 1) + " CPUs of this machine; using " +
                               std::to_string(max_threads()));
    threads = max_threads();
  }
  size_ = threads;
  Shared* s = s_.get();
  try {
    s->workers.reserve(size_t(size_ - 1));
    for (int i = 1; i < size_; ++i)
      s->workers.emplace_back([s, i] {
        t_index = i;
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lk(s->m);
        for (;;) {
          s->cv_work.wait(lk, [&] { return s->stop || s->generation != seen; });
          if (s->stop) return;
          seen = s->generation;
          lk.unlock();
          s->drain();
          lk.lock();
          if (--s->pending == 0) s->cv_done.notify_one();
        }
      });
  } catch (const std::exception& e) {
    const size_t started = s->workers.size();
    stop_workers();
    throw std::runtime_error("cannot start " + std::to_string(size_) + " threads (started " +
                             std::to_string(started + 1) + "): " + e.what() +
                             "; ask for fewer threads or raise the process/memory limits");
  }
}

bool ThreadPool::forked() const { return platform::process_id() != pid_; }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(s_->m);
    s_->stop = true;
  }
  s_->cv_work.notify_all();
  for (auto& t : s_->workers) t.join();
  s_->workers.clear();
}

ThreadPool::~ThreadPool() {
  if (forked()) {
    // The workers belong to the parent: no thread to join here, and the condition variables may
    // still count the parent's waiters (destroying them would block). Leave them.
    (void)s_.release();
    return;
  }
  stop_workers();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  Shared& s = *s_;
  if (s.workers.empty() || n == 1 || forked()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(s.m);
    s.fn = &fn;
    s.n = n;
    s.error = nullptr;
    s.next.store(0);
    s.pending = int(s.workers.size());
    ++s.generation;
  }
  s.cv_work.notify_all();
  s.drain();
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(s.m);
    s.cv_done.wait(lk, [&] { return s.pending == 0; });  // no worker runs fn after this
    s.fn = nullptr;
    err = s.error;
    s.error = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

// ---- ForkSafeMutex: the at-fork handlers ------------------------------------------------------------

// Every live ForkSafeMutex, under `m` (which the handlers hold from prepare to parent/child, so no
// mutex is created or destroyed across the fork). Leaked on purpose: a ForkSafeMutex destroyed
// during static destruction still finds it.
struct ForkRegistry {
  std::mutex m;
  std::vector<ForkSafeMutex*> live;

  static ForkRegistry& get() {
    static ForkRegistry* r = [] {
      auto* reg = new ForkRegistry;
#if !defined(_WIN32)
      pthread_atfork(&ForkRegistry::prepare, &ForkRegistry::after, &ForkRegistry::after);
#endif
      return reg;
    }();
    return *r;
  }
  // Locks in registration order. The mutexes are leaves of the lock order (a holder takes no other
  // ForkSafeMutex), so waiting for each in turn cannot deadlock with their holders.
  static void prepare() {
    ForkRegistry& r = get();
    r.m.lock();
    for (ForkSafeMutex* x : r.live) x->m_.lock();
  }
  // Parent and child alike: the forking thread took every lock in prepare, so it may release them.
  static void after() {
    ForkRegistry& r = get();
    for (auto it = r.live.rbegin(); it != r.live.rend(); ++it) (*it)->m_.unlock();
    r.m.unlock();
  }
};

ForkSafeMutex::ForkSafeMutex() {
  ForkRegistry& r = ForkRegistry::get();
  std::lock_guard<std::mutex> lk(r.m);
  r.live.push_back(this);
}

ForkSafeMutex::~ForkSafeMutex() {
  ForkRegistry& r = ForkRegistry::get();
  std::lock_guard<std::mutex> lk(r.m);
  r.live.erase(std::remove(r.live.begin(), r.live.end(), this), r.live.end());
}

}  // namespace unet_rt
