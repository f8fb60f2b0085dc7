// Input normalisation beyond the model's mean/std: optional per-image percentile normalisation
// (as StarDist and Cellpose do), recorded in the model file's "normalization" metadata:
//   "percentiles": [lo, hi]  -> per image and channel, x' = (x - P_lo(x)) / (P_hi(x) - P_lo(x)),
//                               then the network sees (x' - mean) / std
//   "train_range": {"percentiles": [lo, hi], "low": [...], "high": [...]}  (validated here; used by
//                               the Python Engine to warn about inputs far outside the training range)
// P_q is numpy's default ('linear') percentile over all pixels of the channel. A channel with
// P_hi == P_lo uses a scale of 1 (x' = x - P_lo).
#pragma once
#include <vector>

#include "core/json.h"
#include "runtime/tiler.h"

namespace unet_rt {

struct Normalization;  // model_reader.h

// Validates the optional keys of the parsed "normalization" metadata and stores "percentiles" in
// `n`; throws std::invalid_argument naming the problem.
void parse_normalization_extras(const json::Value& v, int channels, Normalization& n);

// numpy.percentile(channel c of img, q) (method 'linear'), q in [0, 100].
double percentile(const ImageView& img, int c, double q);

// The per-channel mean and std the tiler applies ((x - mean) / std) to realise `n` on this image:
// with percentiles, mean' = P_lo + mean * s and std' = std * s, s = P_hi - P_lo (1 if 0).
void effective_normalization(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                             const std::vector<float>& percentiles, std::vector<float>& mean_out,
                             std::vector<float>& sd_out);

}  // namespace unet_rt
