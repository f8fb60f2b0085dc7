// The C API's frame queue (unet_rt_queue_*, include/unet_rt/unet_rt.h): frames are run in order on
// one thread the queue owns, at most `capacity` in flight, submit never blocks (UNET_RT_ERR_BUSY).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "capi/c_api_internal.h"

using namespace unet_rt::capi;

namespace {
struct Frame {
  Job job;
  std::atomic<int> cancel{0};
  bool done = false;  // under the queue's mutex
  unet_rt_status status = UNET_RT_OK;
  std::string error;
};
}  // namespace

struct unet_rt_queue {
  const unet_rt_engine* engine = nullptr;
  int capacity = 1;
  std::mutex m;
  std::condition_variable cv_work, cv_done;
  std::deque<std::shared_ptr<Frame>> pending;         // submitted, not started
  std::map<uint64_t, std::shared_ptr<Frame>> frames;  // in flight: submitted, not collected
  uint64_t next_ticket = 1;
  bool stop = false;
  std::thread worker;

  void loop() {
    std::unique_lock<std::mutex> lk(m);
    for (;;) {
      cv_work.wait(lk, [&] { return stop || !pending.empty(); });
      if (pending.empty()) return;  // stop, nothing left
      std::shared_ptr<Frame> f = pending.front();
      pending.pop_front();
      lk.unlock();
      unet_rt_status st;
      std::string err;
      if (f->cancel.load()) {
        st = UNET_RT_ERR_CANCELLED;
        err = "cancelled before it started";
      } else {
        st = guarded([&] { run_job(engine, f->job, &f->cancel); });
        if (st != UNET_RT_OK) err = unet_rt_last_error();
      }
      lk.lock();
      f->status = st;
      f->error = std::move(err);
      f->done = true;
      cv_done.notify_all();
    }
  }
};

extern "C" {

unet_rt_status unet_rt_queue_create(const unet_rt_engine* engine, int capacity, unet_rt_queue** queue) {
  if (!queue) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "queue output pointer is NULL");
  *queue = nullptr;
  return guarded([&] {
    if (!engine || !engine->engine) throw std::invalid_argument("engine is NULL");
    if (capacity < 1 || capacity > 4096) throw std::invalid_argument("capacity must be in [1, 4096]");
    auto q = std::make_unique<unet_rt_queue>();
    q->engine = engine;
    q->capacity = capacity;
    unet_rt_queue* raw = q.get();
    q->worker = std::thread([raw] { raw->loop(); });
    *queue = q.release();
  });
}

void unet_rt_queue_destroy(unet_rt_queue* q) {
  if (!q) return;
  {
    std::lock_guard<std::mutex> lk(q->m);
    q->stop = true;
    for (auto& f : q->pending) f->cancel.store(1);  // not started: run as cancelled, at once
  }
  q->cv_work.notify_all();
  if (q->worker.joinable()) q->worker.join();
  delete q;
}

unet_rt_status unet_rt_queue_submit(unet_rt_queue* q, const unet_rt_image* image, const unet_rt_output* out,
                                    const unet_rt_run_options* run, uint64_t* ticket) {
  return guarded([&] {
    if (!q) throw std::invalid_argument("queue is NULL");
    if (!ticket) throw std::invalid_argument("ticket is NULL");
    if (!out) throw std::invalid_argument("output is NULL");
    auto f = std::make_shared<Frame>();
    f->job = make_job(q->engine, image, out, run);  // bad arguments fail here, on the caller's thread
    std::lock_guard<std::mutex> lk(q->m);
    if (int(q->frames.size()) >= q->capacity)
      throw unet_rt::capi::Busy("queue full: " + std::to_string(q->capacity) +
                                " frames in flight (collect them with unet_rt_queue_wait)");
    const uint64_t t = q->next_ticket++;
    q->frames[t] = f;
    q->pending.push_back(f);
    *ticket = t;
    q->cv_work.notify_one();
  });
}

unet_rt_status unet_rt_queue_wait(unet_rt_queue* q, uint64_t ticket, int timeout_ms) {
  if (!q) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "queue is NULL");
  std::shared_ptr<Frame> f;
  {
    std::unique_lock<std::mutex> lk(q->m);
    auto it = q->frames.find(ticket);
    if (it == q->frames.end())
      return set_error(UNET_RT_ERR_INVALID_ARGUMENT,
                       "unknown ticket " + std::to_string(ticket) + " (or already collected)");
    f = it->second;
    auto done = [&] { return f->done; };
    if (timeout_ms < 0) q->cv_done.wait(lk, done);
    else if (!q->cv_done.wait_for(lk, std::chrono::milliseconds(timeout_ms), done))
      return set_error(UNET_RT_ERR_TIMEOUT, "frame " + std::to_string(ticket) + " is still in flight");
    q->frames.erase(ticket);
  }
  return f->status == UNET_RT_OK ? UNET_RT_OK : set_error(f->status, f->error);
}

unet_rt_status unet_rt_queue_cancel(unet_rt_queue* q, uint64_t ticket) {
  if (!q) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "queue is NULL");
  std::lock_guard<std::mutex> lk(q->m);
  auto it = q->frames.find(ticket);
  if (it == q->frames.end())
    return set_error(UNET_RT_ERR_INVALID_ARGUMENT,
                     "unknown ticket " + std::to_string(ticket) + " (or already collected)");
  it->second->cancel.store(1);
  return UNET_RT_OK;
}

int unet_rt_queue_in_flight(const unet_rt_queue* q) {
  if (!q) return 0;
  std::lock_guard<std::mutex> lk(const_cast<unet_rt_queue*>(q)->m);
  return int(q->frames.size());
}

}  // extern "C"
