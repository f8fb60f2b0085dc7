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
#include <cstdint>

#include "core/image.h"

namespace unet_rt {

struct Normalization;  // model_reader.h

// Validates the optional keys of the parsed "normalization" metadata and stores "percentiles" in
// `n`; throws std::invalid_argument naming the problem.
void parse_normalization_extras(const json::Value& v, int channels, Normalization& n);

// numpy.percentile(channel c of img, q) (method 'linear'), q in [0, 100].
double percentile(const ImageView& img, int c, double q);

// numpy's 'linear' percentile q of n values, as the two ranks it reads (0-based, in sorted order) and
// the value from the values a, b at those ranks. percentile() is made of these; so is the percentile
// of an image too large for memory, from histograms summed over its blocks (unet_rt.scale).
struct PercentileRanks {
  int64_t k = 0, k1 = 0;
};
PercentileRanks percentile_ranks(int64_t n, double q);
double percentile_from_ranks(int64_t n, double q, double a, double b);

// The per-channel mean and std the tiler applies ((x - mean) / std) to realise `n` on this image:
// with percentiles, mean' = P_lo + mean * s and std' = std * s, s = P_hi - P_lo (1 if 0).
void effective_normalization(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                             const std::vector<float>& percentiles, std::vector<float>& mean_out,
                             std::vector<float>& sd_out);

// The same with the percentiles given: lo[c], hi[c] = P_lo, P_hi of channel c (e.g. of a whole frame of
// which `img` is a block). The values of `img` (its held part, ImageView::held_*, when it has one) must
// stay finite once normalised.
void normalization_from_percentiles(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                                    const std::vector<double>& lo, const std::vector<double>& hi,
                                    std::vector<float>& mean_out, std::vector<float>& sd_out);

}  // namespace unet_rt
