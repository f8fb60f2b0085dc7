// Weight packing: see pack.h.
#include "executor/pack.h"

#include "kernels/kernels.h"

namespace unet_rt {

static int blocks16(int c) { return (c + 15) / 16; }

// w: PyTorch [OC][IC][kh][kw] -> [OC/ocg][i][blk][kh][kw][cb_i][ocg], zeros where padded.
PackedConv pack_conv(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg) {
  const int oc = (int)w.shape[0], ic = (int)w.shape[1], kh = (int)w.shape[2], kw = (int)w.shape[3];
  PackedConv p;
  p.oc = oc;
  p.ocg = ocg;
  const int ng = (blocks16(oc) * 16 + ocg - 1) / ocg;
  int64_t per_group = 0;
  for (auto& d : ins) per_group += (int64_t)d.nblk * d.cb * kh * kw * ocg;
  p.w.assign(ng * per_group, 0.0f);
  p.b.assign((size_t)ng * ocg, 0.0f);
  for (int o = 0; o < oc; ++o) p.b[o] = b.data[o];
  for (int g = 0; g < ng; ++g) {
    float* dst = p.w.data() + g * per_group;
    int icoff = 0;
    for (auto& d : ins) {
      for (int blk = 0; blk < d.nblk; ++blk)
        for (int ky = 0; ky < kh; ++ky)
          for (int kx = 0; kx < kw; ++kx)
            for (int c = 0; c < d.cb; ++c, dst += ocg) {
              const int ci = blk * d.cb + c;
              if (ci >= d.channels) continue;
              for (int o = 0; o < ocg; ++o) {
                const int oi = g * ocg + o;
                if (oi < oc) dst[o] = w.data[(((int64_t)oi * ic + icoff + ci) * kh + ky) * kw + kx];
              }
            }
      icoff += d.channels;
    }
  }
  return p;
}

int64_t wino_u_bytes(int oc, const std::vector<InDesc>& ins, int ocg, bool bf16) {
  int64_t icp = 0;
  for (auto& d : ins) icp += blocks16(d.channels) * 16;
  const int64_t ng = (blocks16(oc) * 16 + ocg - 1) / ocg;
  return ng * kernels::kWinoT * icp * ocg * (bf16 ? 2 : 4);
}

PackedConv pack_wino(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg,
                     const kernels::Kernels& kn, bool raw_taps) {
  const int oc = (int)w.shape[0];
  PackedConv p;
  p.oc = oc;
  p.ocg = ocg;
  p.wino = true;
  p.raw_taps = raw_taps;
  std::vector<int> chans;
  int icp = 0;
  for (auto& d : ins) {
    chans.push_back(d.channels);
    icp += blocks16(d.channels) * 16;
  }
  const int ng = (blocks16(oc) * 16 + ocg - 1) / ocg;
  const int64_t per_group = (int64_t)kernels::kWinoT * icp * ocg;  // elements of one group's U
  p.u_bytes = wino_u_bytes(oc, ins, ocg, kn.bf16);
  p.w = kernels::wino_pack_raw(w.data, oc, chans, ocg);
  if (!raw_taps) {
    AlignedVector<float> raw;
    raw.swap(p.w);
    if (kn.bf16) p.w16.resize(ng * per_group);
    else p.w.resize(ng * per_group);
    for (int g = 0; g < ng; ++g)
      kn.wino_wt(raw.data() + (int64_t)g * icp * 9 * ocg, icp, ocg, -1,
                 kn.bf16 ? static_cast<void*>(p.w16.data() + g * per_group) : p.w.data() + g * per_group);
  }
  p.b.assign((size_t)ng * ocg, 0.0f);
  for (int o = 0; o < oc; ++o) p.b[o] = b.data[o];
  return p;
}

// w: PyTorch ConvTranspose2d [IC][OC][2][2] -> [OC/ocg][a][b][IC/16*16][ocg].
PackedUp pack_up(const TensorView& w, const TensorView& b, int ocg, bool bf16) {
  const int ic = (int)w.shape[0], oc = (int)w.shape[1];
  const int icp = blocks16(ic) * 16;
  const int ng = (blocks16(oc) * 16 + ocg - 1) / ocg;
  PackedUp p;
  p.oc = oc;
  p.ocg = ocg;
  p.w.assign((size_t)ng * 4 * icp * ocg, 0.0f);
  p.b.assign((size_t)ng * ocg, 0.0f);
  for (int o = 0; o < oc; ++o) p.b[o] = b.data[o];
  for (int g = 0; g < ng; ++g)
    for (int a = 0; a < 2; ++a)
      for (int bb = 0; bb < 2; ++bb)
        for (int c = 0; c < ic; ++c)
          for (int o = 0; o < ocg; ++o) {
            const int oi = g * ocg + o;
            if (oi >= oc) continue;
            p.w[((((int64_t)g * 2 + a) * 2 + bb) * icp + c) * ocg + o] =
                w.data[(((int64_t)c * oc + oi) * 2 + a) * 2 + bb];
          }
  if (bf16) {  // rows (g, a, b, ic) in pairs of input channels (icp is a multiple of 16)
    p.w16.resize(p.w.size());
    for (size_t row = 0; row < p.w.size() / ocg; row += 2)
      for (int o = 0; o < ocg; ++o) {
        p.w16[row * ocg + 2 * o] = kernels::f32_to_bf16(p.w[row * ocg + o]);
        p.w16[row * ocg + 2 * o + 1] = kernels::f32_to_bf16(p.w[(row + 1) * ocg + o]);
      }
    AlignedVector<float>().swap(p.w);
  }
  return p;
}

}  // namespace unet_rt
