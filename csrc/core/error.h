// The core's own exception types (docs/architecture.md, "Error model"; the boundaries translate them:
// C API status codes, Python exceptions). Bad input throws std::invalid_argument; the model reader's
// ModelError and IoError live with it (model/model_reader.h).
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace unet_rt {

// Thrown when a tile function's output holds NaN or Inf (e.g. weights that overflow float32): an
// error, never silent garbage in the probabilities or labels.
class NumericError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown when a progress callback asks to stop.
class Cancelled : public std::runtime_error {
 public:
  Cancelled(size_t done, size_t total)
      : std::runtime_error("cancelled after " + std::to_string(done) + " of " + std::to_string(total) + " tiles"),
        done_(done),
        total_(total) {}
  size_t done() const { return done_; }
  size_t total() const { return total_; }

 private:
  size_t done_, total_;
};

}  // namespace unet_rt
