#include "src/thread_pool.h"

namespace unet_rt {

static thread_local int t_index = 0;
int ThreadPool::thread_index() { return t_index; }

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = (int)std::thread::hardware_concurrency();
  size_ = threads < 1 ? 1 : threads;
  for (int i = 1; i < size_; ++i)
    workers_.emplace_back([this, i] {
      t_index = i;
      worker();
    });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::drain() {
  for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_;) (*fn_)(i);
}

void ThreadPool::worker() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    lk.unlock();
    drain();
    lk.lock();
    if (--pending_ == 0) cv_done_.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(m_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    pending_ = (int)workers_.size();
    ++generation_;
  }
  cv_work_.notify_all();
  drain();
  std::unique_lock<std::mutex> lk(m_);
  cv_done_.wait(lk, [&] { return pending_ == 0; });
  fn_ = nullptr;
}

}  // namespace unet_rt
