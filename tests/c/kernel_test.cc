// Every kernel family of every ISA tier this CPU runs (kernels::available_isas(): ref, avx2, avx512 on
// x86-64; ref, neon on AArch64) against float64 references, with the error bounds of
// tests/test_kernels.py (which checks the same through the Python bindings):
//   a sum of n fp32 products differs from the exact sum by at most gamma_n * sum |w*x|,
//   gamma_n = n*u / (1 - n*u), u = 2^-24 (Higham, Accuracy and Stability, §3.1);
//   Winograd F(4x4, 3x3): gamma_(IC+30) * |A|^T [sum_c |U_c| . |V_c|] |A| (+ |bias|) per output.
// Sizes below, at and above each tier's register tile (widths 1 .. 2*NX+1). Built by CMake with
// UNET_RT_C_TESTS=ON; run natively by tests/test_kernel_program.py and under qemu-aarch64 by
// `make test-aarch64` (tests/aarch64/run.py). Prints "ok ..." / "FAIL ..." per check, then
// "kernel_test: N passed, M failed"; exits 1 on any failure. Also: the whole executor (a depth-2 U-Net)
// per SIMD tier against the ref tier, its kernel names, and the bf16 fallback of tiers without bf16.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/network.h"
#include "executor/pack.h"
#include "executor/winograd.h"
#include "kernels/kernels.h"

namespace unet_rt {
extern thread_local std::string g_network_isa_override;  // executor/network.cc: the tier of the next Network
}
namespace k = unet_rt::kernels;
using unet_rt::InDesc;
using unet_rt::TensorView;

namespace {

int g_pass = 0, g_fail = 0;
std::mt19937 g_rng(1234);

void report(bool ok, const std::string& what, const std::string& detail = "") {
  if (ok) {
    ++g_pass;
    std::printf("ok   %s\n", what.c_str());
  } else {
    ++g_fail;
    std::printf("FAIL %s %s\n", what.c_str(), detail.c_str());
  }
}

constexpr double U = 1.0 / (1 << 24);
double gamma_n(int64_t n) { return n * U / (1 - n * U); }

// A planar float array [c][h][w].
struct Planar {
  int c = 0, h = 0, w = 0;
  std::vector<float> d;
  Planar(int c_, int h_, int w_) : c(c_), h(h_), w(w_), d((size_t)c_ * h_ * w_) {}
  float& at(int ch, int y, int x) { return d[((size_t)ch * h + y) * w + x]; }
  float at(int ch, int y, int x) const { return d[((size_t)ch * h + y) * w + x]; }
};

Planar rand_planar(int c, int h, int w, float scale = 1.0f) {
  std::normal_distribution<float> nd;
  Planar p(c, h, w);
  for (float& v : p.d) v = nd(g_rng) * scale;
  return p;
}
std::vector<float> rand_vec(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(g_rng) * scale;
  return v;
}

// The kernels' blocked layout [ceil(C/cb), H, W, cb] (kernels.h), zeros in padded channels.
struct Blocked {
  int c, h, w, cb, nblk;
  std::vector<float> d;
  Blocked(int c_, int h_, int w_, int cb_)
      : c(c_), h(h_), w(w_), cb(cb_), nblk((c_ + cb_ - 1) / cb_), d((size_t)nblk * h_ * w_ * cb_, 0.0f) {}
  static Blocked from(const Planar& p, int cb) {
    Blocked b(p.c, p.h, p.w, cb);
    for (int ch = 0; ch < p.c; ++ch)
      for (int y = 0; y < p.h; ++y)
        for (int x = 0; x < p.w; ++x) b.d[(((size_t)(ch / cb) * p.h + y) * p.w + x) * cb + ch % cb] = p.at(ch, y, x);
    return b;
  }
  k::View view(int dy = 0, int dx = 0) const {
    k::View v;
    v.cb = cb;
    v.nblk = nblk;
    v.rs = (int64_t)w * cb;
    v.bs = (int64_t)h * v.rs;
    v.p = d.data() + dy * v.rs + dx * cb;
    return v;
  }
  k::OutView out() { return k::OutView{d.data(), (int64_t)w * cb, (int64_t)h * w * cb}; }
  Planar planar(int channels) const {
    Planar p(channels, h, w);
    for (int ch = 0; ch < channels; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) p.at(ch, y, x) = d[(((size_t)(ch / cb) * h + y) * w + x) * cb + ch % cb];
    return p;
  }
};

// |y - exact| <= bound everywhere; returns the detail of the worst element otherwise.
bool within(const std::vector<float>& y, const std::vector<double>& exact, const std::vector<double>& bound,
            std::string* detail) {
  if (y.size() != exact.size()) {
    *detail = "size mismatch";
    return false;
  }
  double worst = -1e300, err_at = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double e = std::fabs((double)y[i] - exact[i]);
    if (!(e <= bound[i]) && (e - bound[i] > worst || std::isnan(e))) {
      worst = std::isnan(e) ? 1e300 : e - bound[i];
      err_at = e;
    }
  }
  if (worst == -1e300) return true;
  char buf[160];
  std::snprintf(buf, sizeof buf, "(error %.3g exceeds the bound by %.3g)", err_at, worst);
  *detail = buf;
  return false;
}

// ---- conv3x3 (direct) --------------------------------------------------------------------------
struct ConvCase {
  std::vector<int> chans;
  int oc, oh, ow;
  std::vector<int> cbs;
  std::vector<std::pair<int, int>> offs;
};

struct ConvData {
  std::vector<Planar> xs;
  std::vector<float> w, b;  // w [OC][IC][3][3]
  std::vector<double> pre, bound;  // [OC][oh][ow]
};

// x cropped at the offsets and concatenated -> exact float64 conv and its Higham bound.
ConvData conv_data(const ConvCase& cc) {
  ConvData d;
  int ic = 0;
  for (size_t i = 0; i < cc.chans.size(); ++i) {
    d.xs.push_back(rand_planar(cc.chans[i], cc.oh + 2 + cc.offs[i].first + 3, cc.ow + 2 + cc.offs[i].second + 1));
    ic += cc.chans[i];
  }
  d.w = rand_vec((size_t)cc.oc * ic * 9, 0.3f);
  d.b = rand_vec(cc.oc);
  d.pre.assign((size_t)cc.oc * cc.oh * cc.ow, 0.0);
  d.bound.assign(d.pre.size(), 0.0);
  const double g = gamma_n(9 * ic + 1);
  for (int o = 0; o < cc.oc; ++o)
    for (int y = 0; y < cc.oh; ++y)
      for (int x = 0; x < cc.ow; ++x) {
        double s = d.b[o], a = std::fabs((double)d.b[o]);
        int c0 = 0;
        for (size_t i = 0; i < d.xs.size(); ++i) {
          for (int c = 0; c < cc.chans[i]; ++c)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const double xv = d.xs[i].at(c, y + ky + cc.offs[i].first, x + kx + cc.offs[i].second);
                const double wv = d.w[(((size_t)o * ic + c0 + c) * 3 + ky) * 3 + kx];
                s += xv * wv;
                a += std::fabs(xv * wv);
              }
          c0 += cc.chans[i];
        }
        d.pre[((size_t)o * cc.oh + y) * cc.ow + x] = s;
        d.bound[((size_t)o * cc.oh + y) * cc.ow + x] = g * a;
      }
  return d;
}

std::vector<float> run_conv(const k::Kernels& kn, const ConvCase& cc, const ConvData& d, int ocg, bool relu) {
  std::vector<Blocked> xb;
  std::vector<InDesc> ins;
  int ic = 0;
  for (size_t i = 0; i < d.xs.size(); ++i) {
    const int cb = i < cc.cbs.size() ? cc.cbs[i] : 16;
    xb.push_back(Blocked::from(d.xs[i], cb));
    ins.push_back(InDesc{d.xs[i].c, cb, xb.back().nblk});
    ic += d.xs[i].c;
  }
  const TensorView tw{{cc.oc, ic, 3, 3}, d.w.data()}, tb{{cc.oc}, d.b.data()};
  const unet_rt::PackedConv pc = unet_rt::pack_conv(tw, tb, ins, ocg);  // the executor's packing
  const int ng = pc.groups();
  Blocked y(ng * ocg, cc.oh, cc.ow, 16);
  k::ConvArgs a;
  a.nin = (int)xb.size();
  for (int i = 0; i < a.nin; ++i) a.in[i] = xb[i].view(cc.offs[i].first, cc.offs[i].second);
  a.w = pc.w.data();
  a.bias = pc.b.data();
  a.ocg = ocg;
  a.ow = cc.ow;
  a.y = y.out();
  a.relu = relu;
  for (int g = 0; g < ng; ++g)
    for (int oy = 0; oy < cc.oh; ++oy) kn.conv(a, g, oy);
  return y.planar(cc.oc).d;
}

std::string conv_id(const ConvCase& cc) {
  std::string s = "ic";
  for (size_t i = 0; i < cc.chans.size(); ++i) s += (i ? "+" : "") + std::to_string(cc.chans[i]);
  return s + "-oc" + std::to_string(cc.oc) + "-" + std::to_string(cc.oh) + "x" + std::to_string(cc.ow);
}

void test_conv3x3(const k::Kernels& kn) {
  const std::vector<ConvCase> cases = {
      {{1}, 16, 3, 1, {1}, {{0, 0}}},
      {{3}, 32, 2, 11, {3}, {{0, 0}}},
      {{3}, 20, 2, 12, {3}, {{1, 2}}},
      {{16}, 16, 2, 5, {16}, {{0, 0}}},
      {{16}, 32, 2, 6, {16}, {{0, 0}}},
      {{16}, 32, 1, 7, {16}, {{0, 0}}},
      {{17}, 48, 2, 13, {16}, {{0, 0}}},
      {{20}, 2, 1, 23, {16}, {{0, 0}}},
      {{32}, 64, 2, 24, {16}, {{0, 0}}},
      {{5}, 32, 1, 25, {5}, {{0, 0}}},
      {{16, 16}, 32, 2, 12, {16, 16}, {{2, 2}, {0, 0}}},
      {{12, 12}, 16, 2, 14, {16, 16}, {{4, 4}, {0, 0}}},
      {{8, 24}, 48, 1, 49, {16, 16}, {{1, 0}, {0, 1}}},
  };
  for (const ConvCase& cc : cases) {
    const ConvData d = conv_data(cc);
    for (int ocg : {16, 32})
      for (bool relu : {true, false}) {
        std::vector<double> exact = d.pre;
        if (relu)
          for (double& v : exact) v = std::max(v, 0.0);  // ReLU is 1-Lipschitz: the bound carries over
        std::string detail;
        const bool ok = within(run_conv(kn, cc, d, ocg, relu), exact, d.bound, &detail);
        report(ok, std::string("conv3x3[") + kn.name + "] " + conv_id(cc) + " ocg" + std::to_string(ocg) +
                       (relu ? " relu" : ""), detail);
      }
  }
  // every remainder tile of both register tiles, against float64 and the scalar reference
  if (kn.isa != k::Isa::Ref)
    for (int ow : {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 23, 24, 25, 36, 37}) {
      const ConvCase cc{{16, 16}, 32, 1, ow, {16, 16}, {{1, 1}, {0, 0}}};
      const ConvData d = conv_data(cc);
      double bmax = 0;
      for (double v : d.bound) bmax = std::max(bmax, v);
      for (int ocg : {16, 32}) {
        const std::vector<float> y = run_conv(kn, cc, d, ocg, false),
                                 ref = run_conv(k::kernels_for(k::Isa::Ref), cc, d, ocg, false);
        std::string detail;
        bool ok = within(y, d.pre, d.bound, &detail);
        for (size_t i = 0; ok && i < y.size(); ++i)
          if (!(std::fabs((double)y[i] - ref[i]) <= 2 * bmax)) ok = false, detail = "differs from ref beyond 2x the bound";
        report(ok, std::string("conv3x3 width sweep[") + kn.name + "] ow " + std::to_string(ow) + " ocg" +
                       std::to_string(ocg), detail);
      }
    }
}

// ---- upconv2x2 -------------------------------------------------------------------------------------
void test_upconv2x2(const k::Kernels& kn) {
  const int cases[][4] = {{16, 16, 2, 1}, {16, 8, 3, 5},  {20, 32, 2, 6},  {32, 48, 1, 7},
                          {64, 32, 2, 12}, {16, 64, 1, 13}, {48, 16, 2, 24}, {16, 32, 1, 25}};
  for (const auto& cs : cases) {
    const int ic = cs[0], oc = cs[1], h = cs[2], w = cs[3];
    const Planar x = rand_planar(ic, h, w);
    const std::vector<float> wt = rand_vec((size_t)ic * oc * 4), b = rand_vec(oc);  // ConvTranspose2d [IC][OC][2][2]
    std::vector<double> exact((size_t)oc * 2 * h * 2 * w), bound(exact.size());
    const double g = gamma_n(ic + 1);
    for (int o = 0; o < oc; ++o)
      for (int y = 0; y < 2 * h; ++y)
        for (int xx = 0; xx < 2 * w; ++xx) {
          double s = b[o], a = std::fabs((double)b[o]);
          for (int c = 0; c < ic; ++c) {
            const double p = (double)x.at(c, y / 2, xx / 2) * wt[(((size_t)c * oc + o) * 2 + y % 2) * 2 + xx % 2];
            s += p;
            a += std::fabs(p);
          }
          exact[((size_t)o * 2 * h + y) * 2 * w + xx] = s;
          bound[((size_t)o * 2 * h + y) * 2 * w + xx] = g * a;
        }
    for (int ocg : {16, 32}) {
      const Blocked xb = Blocked::from(x, 16);
      const unet_rt::PackedUp pu = unet_rt::pack_up(TensorView{{ic, oc, 2, 2}, wt.data()}, TensorView{{oc}, b.data()},
                                                    ocg, kn.bf16);
      const int ng = (int)(pu.b.size() / ocg);
      Blocked y(ng * ocg, 2 * h, 2 * w, 16);
      k::UpArgs a;
      a.in = xb.view();
      a.w = pu.w.data();
      a.w16 = pu.w16.data();
      a.bias = pu.b.data();
      a.ocg = ocg;
      a.iw = w;
      a.y = y.out();
      for (int gi = 0; gi < ng; ++gi)
        for (int iy = 0; iy < h; ++iy) kn.up(a, gi, iy);
      std::string detail;
      const bool ok = within(y.planar(oc).d, exact, bound, &detail);
      report(ok, std::string("upconv2x2[") + kn.name + "] ic" + std::to_string(ic) + "-oc" + std::to_string(oc) + "-" +
                     std::to_string(h) + "x" + std::to_string(w) + " ocg" + std::to_string(ocg), detail);
    }
  }
}

// ---- pool2x2 (exact: max rounds nothing) -------------------------------------------------------------
void test_pool2x2(const k::Kernels& kn) {
  const int cases[][3] = {{16, 2, 2}, {5, 3, 7}, {33, 8, 6}, {16, 9, 25}, {64, 4, 48}};
  for (const auto& cs : cases) {
    const int c = cs[0], h = cs[1], w = cs[2], oh = h / 2, ow = w / 2;
    const Planar x = rand_planar(c, h, w);
    const Blocked xb = Blocked::from(x, 16);
    Blocked y(c, oh, ow, 16);
    k::PoolArgs a;
    a.in = xb.view();
    a.ow = ow;
    a.y = y.out();
    for (int blk = 0; blk < y.nblk; ++blk)
      for (int oy = 0; oy < oh; ++oy) kn.pool(a, blk, oy);
    const Planar got = y.planar(c);
    bool ok = true;
    for (int ch = 0; ch < c; ++ch)
      for (int yy = 0; yy < oh; ++yy)
        for (int xx = 0; xx < ow; ++xx) {
          const float e = std::max(std::max(x.at(ch, 2 * yy, 2 * xx), x.at(ch, 2 * yy, 2 * xx + 1)),
                                   std::max(x.at(ch, 2 * yy + 1, 2 * xx), x.at(ch, 2 * yy + 1, 2 * xx + 1)));
          ok = ok && got.at(ch, yy, xx) == e;
        }
    report(ok, std::string("pool2x2[") + kn.name + "] " + std::to_string(c) + "x" + std::to_string(h) + "x" +
                   std::to_string(w), "(not the exact maximum)");
  }
}

// ---- head1x1 (+ softmax) -------------------------------------------------------------------------------
void test_head1x1(const k::Kernels& kn) {
  const int cases[][4] = {{4, 2, 3, 5}, {16, 2, 2, 7}, {64, 2, 3, 17}, {70, 3, 1, 9}, {16, 1, 2, 3}, {32, 17, 2, 4}};
  for (const auto& cs : cases) {
    const int c = cs[0], kk = cs[1], h = cs[2], w = cs[3];
    const Planar x = rand_planar(c, h, w);
    const std::vector<float> wt = rand_vec((size_t)kk * c), b = rand_vec(kk);
    std::vector<double> logits((size_t)kk * h * w), bound(logits.size());
    for (int o = 0; o < kk; ++o)
      for (int p = 0; p < h * w; ++p) {
        double s = b[o], a = std::fabs((double)b[o]);
        for (int ch = 0; ch < c; ++ch) {
          const double v = (double)wt[(size_t)o * c + ch] * x.d[(size_t)ch * h * w + p];
          s += v;
          a += std::fabs(v);
        }
        logits[(size_t)o * h * w + p] = s;
        bound[(size_t)o * h * w + p] = gamma_n(c + 1) * a;
      }
    const Blocked xb = Blocked::from(x, 16);
    const int c16 = xb.nblk * 16;
    std::vector<float> pw((size_t)kk * c16, 0.0f);
    for (int o = 0; o < kk; ++o)
      for (int ch = 0; ch < c; ++ch) pw[(size_t)o * c16 + ch] = wt[(size_t)o * c + ch];
    const std::string id = std::to_string(c) + "-k" + std::to_string(kk) + "-" + std::to_string(h) + "x" + std::to_string(w);
    for (bool softmax : {false, true}) {
      std::vector<float> out((size_t)kk * h * w);
      k::HeadArgs a;
      a.in = xb.view();
      a.w = pw.data();
      a.bias = b.data();
      a.k = kk;
      a.ow = w;
      a.out = out.data();
      a.out_cs = (int64_t)h * w;
      a.out_rs = w;
      a.softmax = softmax;
      for (int oy = 0; oy < h; ++oy) kn.head(a, oy);
      std::string detail;
      if (!softmax) {
        report(within(out, logits, bound, &detail), std::string("head1x1[") + kn.name + "] " + id, detail);
        continue;
      }
      // inputs off by <= max bound change each probability by <= 2x that, plus exp/div rounding
      double bmax = 0;
      for (double v : bound) bmax = std::max(bmax, v);
      std::vector<double> p(logits.size()), tol(logits.size(), 2 * bmax + 8 * kk * U);
      for (int q = 0; q < h * w; ++q) {
        double m = -1e300, s = 0;
        for (int o = 0; o < kk; ++o) m = std::max(m, logits[(size_t)o * h * w + q]);
        for (int o = 0; o < kk; ++o) s += std::exp(logits[(size_t)o * h * w + q] - m);
        for (int o = 0; o < kk; ++o) p[(size_t)o * h * w + q] = std::exp(logits[(size_t)o * h * w + q] - m) / s;
      }
      report(within(out, p, tol, &detail), std::string("head1x1+softmax[") + kn.name + "] " + id, detail);
    }
  }
}

// ---- conv3x3 by Winograd F(4x4, 3x3), through the executor's own driver (serially) -----------------------
const double BT[6][6] = {{1, -1.5, -2, 1.5, 1, 0}, {0, -1, 0.5, 2.5, 1, 0}, {0, 1, -2.5, 0.5, 1, 0},
                         {0, -2, -1, 2, 1, 0},     {0, 0.5, -1, -0.5, 1, 0}, {0, 1, -1.5, -2, 1.5, 1}};
const double G[6][3] = {{1, 0, 0}, {1. / 3, 1. / 3, 1. / 3}, {-1. / 3, 1. / 3, -1. / 3}, {-16. / 15, -8. / 15, -4. / 15},
                        {1. / 15, -2. / 15, 4. / 15}, {0, 0, 1}};
const double AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5, -2, 0}, {0, 1, 1, 0.25, 4, 0}, {0, 1, -1, 0.125, -8, 1}};

struct WinoCase {
  std::vector<int> chans;
  int oc, oh, ow, band, nt;
};

std::vector<float> run_wino(const k::Kernels& kn, const WinoCase& wc, const ConvData& d,
                            const std::vector<std::pair<int, int>>& offs, int ocg, bool relu, bool raw_taps,
                            int64_t private_band) {
  std::vector<Blocked> xb;
  std::vector<InDesc> ins;
  int ic = 0;
  for (const Planar& x : d.xs) {
    xb.push_back(Blocked::from(x, 16));
    ins.push_back(InDesc{x.c, 16, xb.back().nblk});
    ic += x.c;
  }
  const TensorView tw{{wc.oc, ic, 3, 3}, d.w.data()}, tb{{wc.oc}, d.b.data()};
  const unet_rt::PackedConv pc = unet_rt::pack_wino(tw, tb, ins, ocg, kn, raw_taps);
  const int ng = pc.groups();
  Blocked y(ng * ocg, wc.oh, wc.ow, 16);
  k::WinoArgs a;
  a.nin = (int)xb.size();
  for (int i = 0; i < a.nin; ++i) {
    a.in[i] = xb[i].view(offs[i].first, offs[i].second);
    a.icb += xb[i].nblk;
  }
  a.ocb = ng * ocg / 16;
  a.u = pc.u();
  a.bias = pc.b.data();
  a.ocg = ocg;
  a.oh = wc.oh;
  a.ow = wc.ow;
  a.th = (wc.oh + 3) / 4;
  a.tw = (wc.ow + 3) / 4;
  a.y = y.out();
  a.relu = relu;
  unet_rt::WinoSchedule s;
  s.band = wc.band > 0 ? wc.band : (int64_t)a.th * a.tw;
  s.gemm_nt = wc.nt;
  s.in_nt = 3;
  s.out_nt = 5;
  s.raw = pc.raw();
  s.private_band = private_band;
  std::vector<float> v(unet_rt::wino_v_bytes(a.icb, s.band, kn.bf16) / 4 + 1), m(k::wino_m_floats(a.ocb, s.band));
  unet_rt::run_winograd(kn, a, s, v.data(), m.data(), [](int64_t n, const std::function<void(int64_t)>& fn) {
    for (int64_t i = 0; i < n; ++i) fn(i);
  });
  return y.planar(wc.oc).d;
}

// gamma_(IC+30) * (|A|^T [sum_c |U_c| . |V_c|] |A| + |b|), per output pixel (d zero beyond oh+2 x ow+2).
std::vector<double> wino_bound(const WinoCase& wc, const ConvData& d, const std::vector<std::pair<int, int>>& offs) {
  int ic = 0;
  for (int c : wc.chans) ic += c;
  const int th = (wc.oh + 3) / 4, tw = (wc.ow + 3) / 4;
  std::vector<double> vt((size_t)ic * th * tw * 36, 0.0), ut((size_t)wc.oc * ic * 36, 0.0);
  int c0 = 0;
  for (size_t i = 0; i < d.xs.size(); ++i) {
    for (int c = 0; c < wc.chans[i]; ++c)
      for (int ty = 0; ty < th; ++ty)
        for (int tx = 0; tx < tw; ++tx) {
          double dd[6][6];
          for (int r = 0; r < 6; ++r)
            for (int s = 0; s < 6; ++s) {
              const int yy = 4 * ty + r, xx = 4 * tx + s;
              dd[r][s] = (yy < wc.oh + 2 && xx < wc.ow + 2)
                             ? std::fabs((double)d.xs[i].at(c, yy + offs[i].first, xx + offs[i].second)) : 0.0;
            }
          double* o = &vt[(((size_t)(c0 + c) * th + ty) * tw + tx) * 36];
          for (int a = 0; a < 6; ++a)
            for (int b = 0; b < 6; ++b) {
              double s = 0;
              for (int r = 0; r < 6; ++r)
                for (int q = 0; q < 6; ++q) s += std::fabs(BT[a][r]) * dd[r][q] * std::fabs(BT[b][q]);
              o[a * 6 + b] = s;
            }
        }
    c0 += wc.chans[i];
  }
  for (int o = 0; o < wc.oc; ++o)
    for (int c = 0; c < ic; ++c)
      for (int a = 0; a < 6; ++a)
        for (int b = 0; b < 6; ++b) {
          double s = 0;
          for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j)
              s += std::fabs(G[a][i]) * std::fabs((double)d.w[(((size_t)o * ic + c) * 3 + i) * 3 + j]) * std::fabs(G[b][j]);
          ut[((size_t)o * ic + c) * 36 + a * 6 + b] = s;
        }
  const double g = gamma_n(ic + 30);
  std::vector<double> bound((size_t)wc.oc * wc.oh * wc.ow);
  for (int o = 0; o < wc.oc; ++o)
    for (int ty = 0; ty < th; ++ty)
      for (int tx = 0; tx < tw; ++tx) {
        double m[36] = {};
        for (int c = 0; c < ic; ++c) {
          const double* u = &ut[((size_t)o * ic + c) * 36];
          const double* v = &vt[(((size_t)c * th + ty) * tw + tx) * 36];
          for (int q = 0; q < 36; ++q) m[q] += u[q] * v[q];
        }
        for (int kk = 0; kk < 4; ++kk)
          for (int l = 0; l < 4; ++l) {
            const int yy = 4 * ty + kk, xx = 4 * tx + l;
            if (yy >= wc.oh || xx >= wc.ow) continue;
            double s = 0;
            for (int a = 0; a < 6; ++a)
              for (int b = 0; b < 6; ++b) s += std::fabs(AT[kk][a]) * m[a * 6 + b] * std::fabs(AT[l][b]);
            bound[((size_t)o * wc.oh + yy) * wc.ow + xx] = g * (s + std::fabs((double)d.b[o]));
          }
      }
  return bound;
}

void test_winograd(const k::Kernels& kn) {
  const std::vector<WinoCase> cases = {
      {{16}, 16, 4, 4, 0, 12},   {{16}, 32, 1, 1, 0, 1},      {{16}, 32, 5, 13, 2, 5}, {{32}, 16, 8, 50, 0, 12},
      {{16}, 48, 3, 97, 7, 24},  {{20, 12}, 32, 9, 10, 3, 2}, {{64}, 64, 13, 17, 1, 13},
  };
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const WinoCase& wc = cases[ci];
    std::vector<std::pair<int, int>> offs{{1, 2}};
    while (offs.size() < wc.chans.size()) offs.push_back({0, 0});
    const ConvData d = conv_data(ConvCase{wc.chans, wc.oc, wc.oh, wc.ow, {}, offs});
    const std::vector<double> bound = wino_bound(wc, d, offs);
    std::string id = "ic";
    for (size_t i = 0; i < wc.chans.size(); ++i) id += (i ? "+" : "") + std::to_string(wc.chans[i]);
    id += "-oc" + std::to_string(wc.oc) + "-" + std::to_string(wc.oh) + "x" + std::to_string(wc.ow) + "-band" +
          std::to_string(wc.band) + "-nt" + std::to_string(wc.nt);
    for (int ocg : {16, 32}) {
      for (bool relu : {true, false}) {
        std::vector<double> exact = d.pre;
        if (relu)
          for (double& v : exact) v = std::max(v, 0.0);
        std::string detail;
        const bool ok = within(run_wino(kn, wc, d, offs, ocg, relu, false, 0), exact, bound, &detail);
        report(ok, std::string("conv3x3_winograd[") + kn.name + "] " + id + " ocg" + std::to_string(ocg) +
                       (relu ? " relu" : ""), detail);
      }
      // weights kept as taps (transformed per band on the fly) and private bands: bit for bit the same
      if (ci >= 2) {
        const std::vector<float> ref = run_wino(kn, wc, d, offs, ocg, true, false, 0);
        bool same = run_wino(kn, wc, d, offs, ocg, true, true, 0) == ref;
        for (int64_t pb : {1, 5, 1000000}) same = same && run_wino(kn, wc, d, offs, ocg, true, false, pb) == ref;
        report(same, std::string("winograd schedules agree bit for bit[") + kn.name + "] " + id + " ocg" +
                         std::to_string(ocg), "(raw taps or private bands differ)");
      }
    }
  }
}

// ---- dispatch ----------------------------------------------------------------------------------------------
// The packed weights start on a cache line (core/memory.h, AlignedVector): the kernels' 64-byte weight
// loads and AMX tile rows would otherwise straddle two lines each (std::vector's storage of these
// sizes starts 16 bytes into a page with glibc).
void test_packing_alignment() {
  const int c = 128;  // U of 2.4 MB fp32: large enough for the allocator's page-aligned path
  const std::vector<float> w = rand_vec((size_t)c * c * 9), wu = rand_vec((size_t)c * c * 4), b = rand_vec(c);
  const TensorView tw{{c, c, 3, 3}, w.data()}, tu{{c, c, 2, 2}, wu.data()}, tb{{c}, b.data()};
  const std::vector<InDesc> ins{InDesc{c, 16, c / 16}};
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; };
  std::vector<const k::Kernels*> tables{&k::kernels_for(k::best_isa())};
  if (const k::Kernels* t16 = k::bf16_kernels_for(k::best_isa())) tables.push_back(t16);
  for (const k::Kernels* kn : tables) {
    const int ocg = kn->ocg_for(c);
    const unet_rt::PackedConv d = unet_rt::pack_conv(tw, tb, ins, ocg), wn = unet_rt::pack_wino(tw, tb, ins, ocg, *kn),
                              raw = unet_rt::pack_wino(tw, tb, ins, ocg, *kn, true);
    const unet_rt::PackedUp up = unet_rt::pack_up(tu, tb, ocg, kn->bf16);
    const std::string what = std::string("packed weights 64-byte aligned [") + kn->name + "]";
    report(aligned(d.w.data()) && aligned(d.b.data()) && aligned(wn.u()) && aligned(wn.b.data()) &&
               aligned(raw.raw()) && aligned(kn->bf16 ? (const void*)up.w16.data() : up.w.data()) &&
               aligned(up.b.data()),
           what);
  }
}

void test_dispatch() {
  const std::vector<std::string> isas = k::available_isas();
  const std::string best = k::isa_name(k::best_isa());
  std::string list;
  for (const std::string& s : isas) list += " " + s;
  std::printf("kernel_test: ISAs%s; best %s; Winograd GEMM %s\n", list.c_str(), best.c_str(),
              k::kernels_for(k::best_isa()).wino_gemm_name(k::kernels_for(k::best_isa()).preferred_ocg).c_str());
  report(!isas.empty() && isas.front() == "ref" && isas.back() == best, "dispatch: ref first, best last");
#if defined(__aarch64__)
  // Advanced SIMD is part of ARMv8-A: the neon tier is always chosen, and the x86 tiers are not there
  report(best == "neon" && isas == std::vector<std::string>{"ref", "neon"}, "dispatch: neon on aarch64");
  report(k::kernels_for(k::Isa::Neon).wino_gemm_name(16) == "conv3x3_wino_gemm_f32_5x16_neon" &&
             k::kernels_for(k::Isa::Neon).wino_gemm_name(32) == "conv3x3_wino_gemm_f32_3x32_neon",
         "dispatch: neon GEMM names");
  std::string why;
  report(k::bf16_kernels_for(k::Isa::Neon, &why) == nullptr && why.find("running fp32") != std::string::npos,
         "dispatch: bf16 on neon falls back to fp32 with a reason", why);
  bool threw = false;
  try {
    k::kernels_for(k::Isa::Avx2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  report(threw, "dispatch: no avx2 on aarch64");
#elif defined(__x86_64__)
  bool threw = false;
  try {
    k::kernels_for(k::Isa::Neon);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  report(threw && best != "neon", "dispatch: no neon on x86-64");
#endif
  bool bad = false;
  try {
    k::isa_from_name("sse9");
  } catch (const std::invalid_argument&) {
    bad = true;
  }
  report(bad, "dispatch: unknown ISA name rejected");
  const double peak = k::peak_gflops(1, 0.02);
  report(std::isfinite(peak) && peak > 0, "peak probe: finite and positive");
}

// ---- the whole executor on a small U-Net: each SIMD tier against the ref tier ---------------------------
// (Winograd, the direct first conv, pooling, up-convs, crop-and-concat and the head, wired as in the
// engine). Not a rigorous bound (errors compound through the layers): fp32 rounding differences stay
// far below 1e-3 of the logits' range, a wrong kernel does not.
void test_network(const std::string& isa) {
  unet_rt::Arch arch;
  arch.in_channels = 1;
  arch.classes = 2;
  arch.depth = 2;
  arch.base = 16;
  std::map<std::string, std::vector<float>> store;
  unet_rt::Weights weights;
  for (const auto& [name, shape] : unet_rt::expected_weight_shapes(arch)) {
    int64_t n = 1, fan_in = 1;
    for (size_t i = 0; i < shape.size(); ++i) n *= shape[i], fan_in *= i ? shape[i] : 1;
    store[name] = rand_vec((size_t)n, (float)std::sqrt(2.0 / (double)fan_in));
    weights[name] = TensorView{shape, store[name].data()};
  }
  const int h = 60, w = 44;  // valid sizes for depth 2 without padding: 60 -> 20, 44 -> 4
  const std::vector<float> x = rand_vec((size_t)h * w);
  std::vector<std::vector<float>> out;
  std::string kernel;
  std::vector<unet_rt::Network::ProfileRow> rows;
  int oh = 0, ow = 0;
  for (const std::string& tier : {std::string("ref"), isa}) {
    unet_rt::g_network_isa_override = tier;
    unet_rt::Network net(arch, weights, 2);
    unet_rt::g_network_isa_override.clear();
    oh = net.output_size(h);
    ow = net.output_size(w);
    out.emplace_back((size_t)arch.classes * oh * ow);
    net.set_profile(true);
    net.forward(x.data(), h, w, unet_rt::OutputView{out.back().data(), (int64_t)oh * ow, ow});
    kernel = net.kernel_name();
    rows = net.last_profile();
  }
  // bf16 asked for where the tier has no bf16 table (avx2, neon, avx512 without AVX512-BF16): fp32 runs,
  // and the executor says why
  if (!k::bf16_kernels_for(k::isa_from_name(isa))) {
    unet_rt::g_network_isa_override = isa;
    unet_rt::Network net(arch, weights, 1, unet_rt::Precision::BF16);
    unet_rt::g_network_isa_override.clear();
    report(net.precision() == unet_rt::Precision::F32 && net.precision_note().find("running fp32") != std::string::npos,
           "network[" + isa + "] bf16 falls back to fp32 with the reason", net.precision_note());
  }
  double range = 0, diff = 0;
  for (size_t i = 0; i < out[0].size(); ++i) {
    range = std::max(range, (double)std::fabs(out[0][i]));
    diff = std::max(diff, (double)std::fabs(out[0][i] - out[1][i]));
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "(max difference %.3g, logits up to %.3g, %dx%d)", diff, range, oh, ow);
  report(range > 0 && diff <= 1e-3 * range, "network[" + isa + "] vs ref, depth 2, " + kernel, buf);
  // the profile's phases name this tier's kernels (and no other tier's; layout reorders name none)
  std::string bad;
  int ours = 0;
  for (const auto& r : rows) {
    ours += r.phase.find("_" + isa) != std::string::npos;
    for (const char* other : {"_ref", "_avx2", "_avx512", "_neon"})
      if (("_" + isa) != other && r.phase.find(other) != std::string::npos) bad = r.phase;
  }
  std::set<std::string> kinds;
  for (const auto& r : rows)
    if (r.phase.find("_" + isa) != std::string::npos) kinds.insert(r.phase.substr(0, r.phase.find('_', 8)));
  report(bad.empty() && kinds.size() >= 5 && kernel.find("_" + isa) != std::string::npos,
         "network[" + isa + "] profile phases name the " + isa + " kernels (" + std::to_string(ours) + " rows)", bad);
}

}  // namespace

int main(int argc, char** argv) {
  // optional filter: run only the tiers named on the command line
  std::vector<std::string> only(argv + 1, argv + argc);
  try {
    test_dispatch();
    test_packing_alignment();
    for (const std::string& name : k::available_isas()) {
      if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
      const k::Kernels& kn = k::kernels_for(k::isa_from_name(name));
      test_conv3x3(kn);
      test_upconv2x2(kn);
      test_pool2x2(kn);
      test_head1x1(kn);
      test_winograd(kn);
      if (kn.isa != k::Isa::Ref) test_network(name);
    }
  } catch (const std::exception& e) {
    report(false, "unexpected exception", e.what());
  }
  std::printf("kernel_test: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
