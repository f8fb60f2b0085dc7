// A small persistent thread pool: workers are created once and sleep between jobs; the calling
// thread takes part in every job. Work items are handed out one at a time from an atomic counter
// (dynamic scheduling copes with a shared, noisy machine better than a static split).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace unet_rt {

class ThreadPool {
 public:
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
  void worker();
  void drain();

  int size_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_work_, cv_done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
};

}  // namespace unet_rt
