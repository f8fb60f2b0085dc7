// A small persistent thread pool: workers are created once and sleep between jobs; the calling
// thread takes part in every job. Work items are handed out one at a time from an atomic counter
// (dynamic scheduling copes with a shared, noisy machine better than a static split).
//
// Failure behaviour (docs/architecture.md, "Threading model"):
// - the thread count is clamped to kMaxThreadsPerCpu x the CPUs of the machine (a message says so);
// - a worker that cannot be started makes the constructor throw std::runtime_error after the
//   workers already started have been stopped and joined (no hang, no terminate);
// - an exception thrown by fn on any thread (a worker or the caller) stops the hand-out of further
//   items, waits until no thread runs fn any more, and is rethrown to parallel_for's caller (the
//   first one; later ones are dropped);
// - after fork() the child has none of the workers: parallel_for then runs every item on the
//   calling thread, and the destructor leaves the parent's synchronisation state alone.
//
// ForkSafeMutex (below) is the mutex for state that a forked child must be able to use: the
// executor's per-network lock (csrc/executor/network.cc) is one, so that a child forked while
// another thread of the parent runs a tile does not inherit it locked (and block forever).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace unet_rt {

class ThreadPool {
 public:
  static constexpr int kMaxThreadsPerCpu = 4;
  // The largest thread count a pool accepts on this machine.
  static int max_threads();

  explicit ThreadPool(int threads);  // total threads, the caller included; <= 0: every core
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }
  // Index of the calling thread inside the job being run: 0 for the thread that called
  // parallel_for, 1..size()-1 for the workers (per-thread scratch memory).
  static int thread_index();
  // Runs fn(i) for every i in [0, n) and returns when all are done. Not reentrant: one job at a
  // time per pool (the network serialises its forward passes).
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  struct Shared;  // everything the workers touch; leaked (not destroyed) in a forked child
  void stop_workers();
  bool forked() const;

  int size_ = 1;
  long pid_ = 0;
  std::unique_ptr<Shared> s_;
};

// A mutex that fork() leaves unlocked in both processes. pthread_atfork handlers (installed once,
// by the first ForkSafeMutex) lock every live ForkSafeMutex before fork() returns — so fork() waits
// until no thread holds one, e.g. for a tile in flight on another thread to finish — and unlock
// them afterwards in the parent and in the child. Rules for users: never hold one while waiting
// for something a forking thread may hold (the GIL, another ForkSafeMutex), and never fork() while
// holding one (the handlers would deadlock on it). BasicLockable: use with std::lock_guard.
class ForkSafeMutex {
 public:
  ForkSafeMutex();
  ~ForkSafeMutex();
  ForkSafeMutex(const ForkSafeMutex&) = delete;
  ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;
  void lock() { m_.lock(); }
  void unlock() { m_.unlock(); }
  bool try_lock() { return m_.try_lock(); }

 private:
  friend struct ForkRegistry;
  std::mutex m_;
};

}  // namespace unet_rt
