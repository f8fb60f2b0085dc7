// The network executor (network.h): validates and repacks the weights once, plans the activation
// memory once per tile shape, and runs the U-Net as a list of fused ops on the blocked layout of
// csrc/kernels/kernels.h, spread over a persistent thread pool.
//
//   input [Cin, h, w] planar --reorder--> [ceil(Cin/cb), h, w, cb]   (cb = Cin if Cin < 16, else 16)
//   encoder l = 0..D:  conv3x3+bias+ReLU, conv3x3+bias+ReLU (-> skip l), pool2x2 (l < D)
//                       (every conv on 16-channel blocks runs as Winograd F(4x4,3x3): 4x fewer
//                       multiplies; the first conv, on the cb = Cin input, runs direct)
//   decoder l = D-1..0: upconv2x2+bias; conv3x3+bias+ReLU over TWO inputs (cropped skip view,
//                       up-sampled tensor: no concat copy); conv3x3+bias+ReLU
//   head 1x1 (+ softmax) written straight into the caller's planar, strided output.
// "same" padding: every tensor gets a one-pixel zero border in memory and each 3x3 conv reads a
// view shifted by (-1, -1); the border ring is re-zeroed after each op (memory is reused).
//
// Environment knobs: UNET_RT_ISA=ref|avx2|avx512 (default: the best this CPU has), UNET_RT_WINOGRAD=0
// (direct convolution everywhere), UNET_RT_WINOGRAD_MAX_CHANNELS=N (Winograd only for convs with <= N
// output channels: its transformed weights take 4x the memory, 463 MB instead of 124 MB for the
// paper network). workspace_bytes() covers the activations and the Winograd scratch, not weights.
#include "src/network.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "kernels/kernels.h"
#include "src/geometry.h"
#include "src/thread_pool.h"

namespace unet_rt {

namespace k = kernels;

// Internal hook for tests and benchmarks (csrc/python/kernels.cc): the ISA the next Network built
// on this thread uses ("ref", "avx2", "avx512"; empty: UNET_RT_ISA from the environment, else the
// best this CPU has).
thread_local std::string g_network_isa_override;
// Same for Winograd: -1 = default (UNET_RT_WINOGRAD=0 in the environment turns it off), 0 off, 1 on.
thread_local int g_network_winograd_override = -1;

namespace {

constexpr int64_t kAlign = 16;  // floats (64 bytes)

int blocks16(int c) { return (c + 15) / 16; }

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

struct PackedConv {
  std::vector<float> w, b;   // direct: [OC/ocg][i][blk][3][3][cb][ocg]; Winograd: U [OC/ocg][36][IC][ocg]
  int oc = 0, ocg = 16;
  bool wino = false;
};
struct PackedUp {
  std::vector<float> w, b;
  int oc = 0, ocg = 16;
};

// Input-channel groups of a conv as the kernel sees them (see kernels.h packing).
struct InDesc {
  int channels, cb, nblk;
};

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

// Winograd F(4x4, 3x3) version of a conv whose inputs all use 16-channel blocks.
PackedConv pack_wino(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg) {
  const int oc = (int)w.shape[0];
  PackedConv p;
  p.oc = oc;
  p.ocg = ocg;
  p.wino = true;
  std::vector<int> chans;
  for (auto& d : ins) chans.push_back(d.channels);
  p.w = kernels::wino_pack_weights(w.data, oc, chans, ocg);
  const int ng = (blocks16(oc) * 16 + ocg - 1) / ocg;
  p.b.assign((size_t)ng * ocg, 0.0f);
  for (int o = 0; o < oc; ++o) p.b[o] = b.data[o];
  return p;
}

// w: PyTorch ConvTranspose2d [IC][OC][2][2] -> [OC/ocg][a][b][IC/16*16][ocg].
PackedUp pack_up(const TensorView& w, const TensorView& b, int ocg) {
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
            p.w[((((int64_t)g * 2 + a) * 2 + bb) * icp + c) * ocg + o] = w.data[(((int64_t)c * oc + oi) * 2 + a) * 2 + bb];
          }
  return p;
}

enum class OpKind { Reorder, Conv, Pool, Up, Head };

struct Op {
  OpKind kind;
  int64_t band = 0;     // Winograd conv: tiles per band
  int out = -1;         // tensor id (-1: the caller's output)
  int in[2] = {-1, -1};
  int dy[2] = {0, 0}, dx[2] = {0, 0};  // view offsets into each input (crop; -1 for same padding)
  int nin = 0;
  int weights = -1;     // index into convs_ / ups_
  int oh = 0, ow = 0;   // output size
};

struct Tensor {
  int nblk = 0, cb = 16, h = 0, w = 0;
  int64_t off = 0, floats = 0;
  int first = 0, last = 0;
};

struct Plan {
  std::vector<Tensor> t;
  std::vector<Op> ops;
  int64_t floats = 0;          // activations + Winograd scratch (the arena)
  int64_t wino_v = 0, wino_m = 0;  // Winograd band buffer at offset act_floats, then M per thread
  int64_t act_floats = 0;
  int oh = 0, ow = 0;
};

}  // namespace

struct Network::Impl {
  Arch arch;
  const k::Kernels* kern = nullptr;
  std::unique_ptr<ThreadPool> pool;
  int pad = 0;        // 1 for same padding (zero border in memory)
  int in_cb = 1;
  std::vector<int> widths;
  std::vector<PackedConv> convs;   // enc.l.conv1, enc.l.conv2 (2l, 2l+1), then dec.l.conv1/2
  std::vector<PackedUp> ups;       // dec.l.up at index l
  std::vector<float> head_w, head_b;
  mutable std::mutex mu;
  mutable std::map<std::pair<int, int>, Plan> plans;
  std::unique_ptr<float, FreeDeleter> arena;
  int64_t arena_floats = 0;
  mutable bool arena_to_release = false;  // set when the plan cache was cleared

  bool winograd = true;
  int64_t wino_max_channels = 1 << 30;               // convs with more output channels run direct
  static constexpr int kWinoNt = 24;                 // tiles per Winograd work unit
  static constexpr int64_t kWinoBand = 2 << 20;      // floats of V per band (8 MB, stays in L3)
  PackedConv pack(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg) const {
    bool all16 = true;
    for (auto& d : ins) all16 = all16 && d.cb == 16;
    return (winograd && all16 && w.shape[0] <= wino_max_channels) ? pack_wino(w, b, ins, ocg) : pack_conv(w, b, ins, ocg);
  }

  int enc_conv(int l, int j) const { return 2 * l + j; }
  int dec_conv(int l, int j) const { return 2 * (arch.depth + 1) + 2 * l + j; }

  const Plan& plan(int h, int w) const;  // cached (forward)
  Plan build_plan(int h, int w) const;    // not cached (workspace_bytes: the tiler asks for many shapes)
  k::View view(const Plan& p, int id, int dy, int dx) const;
  k::OutView out_view(const Plan& p, int id) const;
  void zero_border(const Plan& p, int id) const;
};

// ---- construction: validation and packing -------------------------------------------------------

// A tensor check_weights has validated.
static const TensorView& need(const Weights& ws, const std::string& name) { return ws.at(name); }

Network::Network(const Arch& arch, const Weights& weights, int threads) : impl_(new Impl) {
  Impl& m = *impl_;
  if (arch.in_channels < 1 || arch.classes < 1 || arch.depth < 1 || arch.depth > 8 || arch.base < 1)
    throw std::invalid_argument("bad architecture: in_channels, classes and base must be >= 1, depth 1..8");
  if ((int64_t)arch.base << arch.depth > (1 << 16))
    throw std::invalid_argument("bad architecture: base * 2^depth too large");
  m.arch = arch;
  check_weights(arch, weights);
  std::string isa = g_network_isa_override;
  if (isa.empty()) {
    const char* env = std::getenv("UNET_RT_ISA");
    if (env) isa = env;
  }
  m.kern = &k::kernels_for(k::isa_from_name(isa));
  m.pad = arch.same_padding ? 1 : 0;
  if (g_network_winograd_override >= 0) {
    m.winograd = g_network_winograd_override == 1;
  } else {
    const char* env = std::getenv("UNET_RT_WINOGRAD");
    m.winograd = !(env && std::string(env) == "0");
  }
  if (const char* env = std::getenv("UNET_RT_WINOGRAD_MAX_CHANNELS")) m.wino_max_channels = std::atoll(env);
  m.in_cb = arch.in_channels < 16 ? arch.in_channels : 16;

  const int D = arch.depth;
  for (int l = 0; l <= D; ++l) m.widths.push_back(arch.base << l);
  int prev = arch.in_channels;
  for (int l = 0; l <= D; ++l) {
    const int c = m.widths[l];
    const std::string p = "enc." + std::to_string(l) + ".";
    std::vector<InDesc> in1 = {l == 0 ? InDesc{prev, m.in_cb, (prev + m.in_cb - 1) / m.in_cb}
                                      : InDesc{prev, 16, blocks16(prev)}};
    m.convs.push_back(m.pack(need(weights, p + "conv1.weight"),
                             need(weights, p + "conv1.bias"), in1, m.kern->ocg_for(c)));
    m.convs.push_back(m.pack(need(weights, p + "conv2.weight"), need(weights, p + "conv2.bias"),
                             {InDesc{c, 16, blocks16(c)}}, m.kern->ocg_for(c)));
    prev = c;
  }
  for (int l = 0; l < D; ++l) {
    const int c = m.widths[l];
    const std::string p = "dec." + std::to_string(l) + ".";
    m.ups.push_back(pack_up(need(weights, p + "up.weight"), need(weights, p + "up.bias"),
                            m.kern->ocg_for(c)));
  }
  for (int l = 0; l < D; ++l) {
    const int c = m.widths[l];
    const std::string p = "dec." + std::to_string(l) + ".";
    m.convs.push_back(m.pack(need(weights, p + "conv1.weight"),
                             need(weights, p + "conv1.bias"),
                             {InDesc{c, 16, blocks16(c)}, InDesc{c, 16, blocks16(c)}}, m.kern->ocg_for(c)));
    m.convs.push_back(m.pack(need(weights, p + "conv2.weight"), need(weights, p + "conv2.bias"),
                             {InDesc{c, 16, blocks16(c)}}, m.kern->ocg_for(c)));
  }
  const int K = arch.classes, c0 = arch.base, c0p = blocks16(c0) * 16;
  const TensorView& hw = need(weights, "head.weight");
  const TensorView& hb = need(weights, "head.bias");
  m.head_w.assign((size_t)K * c0p, 0.0f);
  for (int kk = 0; kk < K; ++kk)
    for (int c = 0; c < c0; ++c) m.head_w[(size_t)kk * c0p + c] = hw.data[(size_t)kk * c0 + c];
  m.head_b.assign(hb.data, hb.data + K);
  m.pool = std::make_unique<ThreadPool>(threads);
}

Network::~Network() = default;

const Arch& Network::arch() const { return impl_->arch; }
int Network::threads() const { return impl_->pool->size(); }

int Network::output_size(int size) const { return unet_rt::output_size(size, impl_->arch.depth, impl_->arch.same_padding); }

// ---- planning: ops, tensor lifetimes, memory offsets --------------------------------------------

const Plan& Network::Impl::plan(int h, int w) const {
  auto key = std::make_pair(h, w);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  if (plans.size() >= Network::kMaxPlans) {
    // Bounded memory for callers that feed ever new tile shapes: start over (the arena, sized for
    // the dropped plans, goes too; forward() allocates what the next plan needs).
    plans.clear();
    arena_to_release = true;
  }
  return plans.emplace(key, build_plan(h, w)).first->second;
}

Plan Network::Impl::build_plan(int h, int w) const {
  const int D = arch.depth, P = pad, shrink = arch.same_padding ? 0 : 2;
  Plan p;
  p.oh = unet_rt::output_size(h, D, arch.same_padding);
  p.ow = unet_rt::output_size(w, D, arch.same_padding);
  auto add = [&](int nblk, int cb, int th, int tw) {
    Tensor t;
    t.nblk = nblk;
    t.cb = cb;
    t.h = th;
    t.w = tw;
    t.floats = ((int64_t)nblk * (th + 2 * P) * (tw + 2 * P) * cb + kAlign - 1) / kAlign * kAlign;
    p.t.push_back(t);
    return (int)p.t.size() - 1;
  };
  auto conv = [&](int widx, std::vector<std::pair<int, int>> ins, int oc) {  // (tensor, crop offset)
    Op op;
    op.kind = OpKind::Conv;
    op.weights = widx;
    op.nin = (int)ins.size();
    const Tensor& t0 = p.t[ins[0].first];
    op.oh = t0.h - 2 * ins[0].second - shrink;
    op.ow = t0.w - 2 * ins[0].second - shrink;
    for (int i = 0; i < op.nin; ++i) {
      op.in[i] = ins[i].first;
      op.dy[i] = op.dx[i] = ins[i].second - P;
    }
    op.out = add(blocks16(oc), 16, op.oh, op.ow);
    p.ops.push_back(op);
    return op.out;
  };
  Op r;
  r.kind = OpKind::Reorder;
  r.out = add((arch.in_channels + in_cb - 1) / in_cb, in_cb, h, w);
  r.oh = h;
  r.ow = w;
  p.ops.push_back(r);
  int cur = r.out;
  std::vector<int> skips;
  for (int l = 0; l <= D; ++l) {
    cur = conv(enc_conv(l, 0), {{cur, 0}}, widths[l]);
    cur = conv(enc_conv(l, 1), {{cur, 0}}, widths[l]);
    skips.push_back(cur);
    if (l < D) {
      Op op;
      op.kind = OpKind::Pool;
      op.in[0] = cur;
      op.nin = 1;
      op.oh = p.t[cur].h / 2;
      op.ow = p.t[cur].w / 2;
      op.out = add(blocks16(widths[l]), 16, op.oh, op.ow);
      p.ops.push_back(op);
      cur = op.out;
    }
  }
  for (int l = D - 1; l >= 0; --l) {
    Op op;
    op.kind = OpKind::Up;
    op.in[0] = cur;
    op.nin = 1;
    op.weights = l;
    op.oh = 2 * p.t[cur].h;
    op.ow = 2 * p.t[cur].w;
    op.out = add(blocks16(widths[l]), 16, op.oh, op.ow);
    p.ops.push_back(op);
    const Tensor& s = p.t[skips[l]];
    const int crop = (s.h - op.oh) / 2;
    if (s.h - op.oh != s.w - op.ow || crop < 0 || (s.h - op.oh) % 2)
      throw std::logic_error("internal: skip/up-sampled sizes do not match");
    // Crop-and-concat without a copy: conv1 reads the cropped skip view and the up-sampled tensor.
    // The crop offset is the same on both axes; the up-sampled input is uncropped.
    Op c;
    c.kind = OpKind::Conv;
    c.weights = dec_conv(l, 0);
    c.nin = 2;
    c.in[0] = skips[l];
    c.dy[0] = c.dx[0] = crop - P;
    c.in[1] = op.out;
    c.dy[1] = c.dx[1] = -P;
    c.oh = op.oh - shrink;
    c.ow = op.ow - shrink;
    c.out = add(blocks16(widths[l]), 16, c.oh, c.ow);
    p.ops.push_back(c);
    cur = conv(dec_conv(l, 1), {{c.out, 0}}, widths[l]);
  }
  Op hd;
  hd.kind = OpKind::Head;
  hd.in[0] = cur;
  hd.nin = 1;
  hd.oh = p.t[cur].h;
  hd.ow = p.t[cur].w;
  p.ops.push_back(hd);
  if (hd.oh != p.oh || hd.ow != p.ow) throw std::logic_error("internal: planned output size mismatch");

  // Lifetimes [first, last] in op indices; then greedy placement, largest first, at the lowest
  // offset that does not overlap any placed tensor alive at the same time.
  for (auto& t : p.t) t.first = -1;
  for (int i = 0; i < (int)p.ops.size(); ++i) {
    const Op& op = p.ops[i];
    if (op.out >= 0) p.t[op.out].first = p.t[op.out].last = i;
    for (int j = 0; j < op.nin; ++j) p.t[op.in[j]].last = std::max(p.t[op.in[j]].last, i);
  }
  std::vector<int> order(p.t.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = (int)i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p.t[a].floats > p.t[b].floats; });
  std::vector<int> placed;
  for (int id : order) {
    Tensor& t = p.t[id];
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (int o : placed) {
      const Tensor& u = p.t[o];
      if (u.first <= t.last && t.first <= u.last) busy.push_back({u.off, u.off + u.floats});
    }
    std::sort(busy.begin(), busy.end());
    int64_t off = 0;
    for (auto& [b0, b1] : busy) {
      if (off + t.floats <= b0) break;
      off = std::max(off, b1);
    }
    t.off = off;
    p.floats = std::max(p.floats, off + t.floats);
    placed.push_back(id);
  }
  p.act_floats = p.floats;
  for (auto& op : p.ops) {
    if (op.kind != OpKind::Conv || !convs[op.weights].wino) continue;
    const PackedConv& cw = convs[op.weights];
    int icb = 0;
    for (int i = 0; i < op.nin; ++i) icb += p.t[op.in[i]].nblk;
    const int64_t tiles = (int64_t)((op.oh + 3) / 4) * ((op.ow + 3) / 4);
    const int64_t per_tile = kernels::wino_v_floats(icb, 1);
    int64_t band = std::max<int64_t>(kWinoNt, kWinoBand / per_tile / kWinoNt * kWinoNt);
    op.band = std::min(band, tiles);
    p.wino_v = std::max(p.wino_v, kernels::wino_v_floats(icb, op.band));
    p.wino_m = std::max(p.wino_m, (kernels::wino_m_floats(cw.ocg, kWinoNt) + kAlign - 1) / kAlign * kAlign);
  }
  p.wino_v = (p.wino_v + kAlign - 1) / kAlign * kAlign;
  p.floats = p.act_floats + p.wino_v + p.wino_m * pool->size();
  return p;
}

k::View Network::Impl::view(const Plan& p, int id, int dy, int dx) const {
  const Tensor& t = p.t[id];
  k::View v;
  v.cb = t.cb;
  v.nblk = t.nblk;
  v.rs = (int64_t)(t.w + 2 * pad) * t.cb;
  v.bs = (int64_t)(t.h + 2 * pad) * v.rs;
  v.p = arena.get() + t.off + (pad + dy) * v.rs + (pad + dx) * t.cb;
  return v;
}

k::OutView Network::Impl::out_view(const Plan& p, int id) const {
  k::View v = view(p, id, 0, 0);
  return k::OutView{const_cast<float*>(v.p), v.rs, v.bs};
}

void Network::Impl::zero_border(const Plan& p, int id) const {
  if (!pad) return;
  const Tensor& t = p.t[id];
  const int64_t rs = (int64_t)(t.w + 2) * t.cb, bs = (int64_t)(t.h + 2) * rs;
  float* base = arena.get() + t.off;
  for (int b = 0; b < t.nblk; ++b) {
    float* q = base + b * bs;
    std::memset(q, 0, rs * sizeof(float));
    std::memset(q + (t.h + 1) * rs, 0, rs * sizeof(float));
    for (int y = 1; y <= t.h; ++y) {
      std::memset(q + y * rs, 0, t.cb * sizeof(float));
      std::memset(q + y * rs + (t.w + 1) * t.cb, 0, t.cb * sizeof(float));
    }
  }
}

size_t Network::workspace_bytes(int h, int w) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  unet_rt::output_size(h, impl_->arch.depth, impl_->arch.same_padding);
  unet_rt::output_size(w, impl_->arch.depth, impl_->arch.same_padding);
  auto it = impl_->plans.find(std::make_pair(h, w));
  return size_t(it != impl_->plans.end() ? it->second.floats : impl_->build_plan(h, w).floats) * sizeof(float);
}

size_t Network::cached_plans() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->plans.size();
}

size_t Network::arena_bytes() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return size_t(impl_->arena_floats) * sizeof(float);
}

// ---- execution ----------------------------------------------------------------------------------

void Network::forward(const float* in, int h, int w, const OutputView& out, HeadOutput head) {
  if (!in) throw std::invalid_argument("forward: null input");
  if (!out.data) throw std::invalid_argument("forward: null output");
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  unet_rt::output_size(h, m.arch.depth, m.arch.same_padding);  // throws with a clear message
  unet_rt::output_size(w, m.arch.depth, m.arch.same_padding);
  const Plan& p = m.plan(h, w);
  if (m.arena_to_release) {
    m.arena.reset();
    m.arena_floats = 0;
    m.arena_to_release = false;
  }
  if (p.floats > m.arena_floats) {
    m.arena.reset();
    void* mem = nullptr;
    if (posix_memalign(&mem, 64, (size_t)p.floats * sizeof(float)) != 0) throw std::bad_alloc();
    m.arena.reset(static_cast<float*>(mem));
    m.arena_floats = p.floats;
  }
  ThreadPool& pool = *m.pool;
  const k::Kernels& kn = *m.kern;
  for (const Op& op : p.ops) {
    switch (op.kind) {
      case OpKind::Reorder: {
        // in: [Cin, h, w] planar -> [ceil(Cin/cb), h, w, cb] (zeros in padded channels)
        const Tensor& t = p.t[op.out];
        k::OutView y = m.out_view(p, op.out);
        const int cin = m.arch.in_channels, cb = t.cb;
        pool.parallel_for(h, [&](int64_t yy) {
          for (int b = 0; b < t.nblk; ++b) {
            float* row = y.p + b * y.bs + yy * y.rs;
            for (int c = 0; c < cb; ++c) {
              const int ci = b * cb + c;
              if (ci < cin) {
                const float* src = in + ((int64_t)ci * h + yy) * w;
                for (int x = 0; x < w; ++x) row[x * cb + c] = src[x];
              } else {
                for (int x = 0; x < w; ++x) row[x * cb + c] = 0.0f;
              }
            }
          }
        });
        m.zero_border(p, op.out);
        break;
      }
      case OpKind::Conv: {
        // x_i: [C_i/16, H, W, 16] views (crop offsets)  w: [OC/ocg, IC, 3, 3, ocg]  -> y: [OC/16, H-2, W-2, 16]
        const PackedConv& cw = m.convs[op.weights];
        if (cw.wino) {
          // x_i: [C_i/16, H, W, 16] views  U: [OC/ocg, 36, IC, ocg]  -> y: [OC/16, H-2, W-2, 16]
          // Winograd F(4x4, 3x3) in bands of tiles: input transforms of the band (parallel over
          // tiles), then GEMMs + output transforms (parallel over groups x work units).
          k::WinoArgs a;
          a.nin = op.nin;
          a.icb = 0;
          for (int i = 0; i < op.nin; ++i) {
            a.in[i] = m.view(p, op.in[i], op.dy[i], op.dx[i]);
            a.icb += a.in[i].nblk;
          }
          a.u = cw.w.data();
          a.bias = cw.b.data();
          a.ocg = cw.ocg;
          a.oh = op.oh;
          a.ow = op.ow;
          a.th = (op.oh + 3) / 4;
          a.tw = (op.ow + 3) / 4;
          a.y = m.out_view(p, op.out);
          a.relu = true;
          float* vbuf = m.arena.get() + p.act_floats;
          float* mbuf = vbuf + p.wino_v;
          const int ng = (int)(cw.b.size() / cw.ocg);
          const int64_t tiles = (int64_t)a.th * a.tw, nb = op.band, nt = Impl::kWinoNt;
          for (int64_t t0 = 0; t0 < tiles; t0 += nb) {
            const int64_t n = std::min(nb, tiles - t0), chunks = (n + nt - 1) / nt;
            pool.parallel_for(n, [&](int64_t j) { kn.wino_in(a, vbuf, nb, t0 + j, j); });
            const bool group_major = (int64_t)cw.w.size() > k::wino_v_floats(a.icb, n);
            pool.parallel_for(ng * chunks, [&](int64_t t) {
              const int g = (int)(group_major ? t / chunks : t % ng);
              const int64_t c = group_major ? t % chunks : t / ng;
              kn.wino_out(a, vbuf, nb, t0, g, c * nt, (int)std::min(nt, n - c * nt),
                          mbuf + p.wino_m * ThreadPool::thread_index());
            });
          }
          m.zero_border(p, op.out);
          break;
        }
        k::ConvArgs a;
        a.nin = op.nin;
        for (int i = 0; i < op.nin; ++i) a.in[i] = m.view(p, op.in[i], op.dy[i], op.dx[i]);
        a.w = cw.w.data();
        a.bias = cw.b.data();
        a.ocg = cw.ocg;
        a.ow = op.ow;
        a.y = m.out_view(p, op.out);
        a.relu = true;
        const int ng = (int)(cw.b.size() / cw.ocg);
        // Row-major work order when the input is the larger operand (each input row set is reused
        // by every group while it is in cache), group-major when the weights are (deep levels).
        int64_t in_floats = 0;
        for (int i = 0; i < op.nin; ++i) in_floats += p.t[op.in[i]].floats;
        const bool group_major = (int64_t)cw.w.size() > in_floats;
        const int oh = op.oh;
        pool.parallel_for((int64_t)ng * oh, [&](int64_t t) {
          if (group_major) kn.conv(a, (int)(t / oh), (int)(t % oh));
          else kn.conv(a, (int)(t % ng), (int)(t / ng));
        });
        m.zero_border(p, op.out);
        break;
      }
      case OpKind::Pool: {
        // x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16]
        k::PoolArgs a;
        a.in = m.view(p, op.in[0], 0, 0);
        a.ow = op.ow;
        a.y = m.out_view(p, op.out);
        const int nb = p.t[op.out].nblk, oh = op.oh;
        pool.parallel_for((int64_t)nb * oh, [&](int64_t t) { kn.pool(a, (int)(t / oh), (int)(t % oh)); });
        m.zero_border(p, op.out);
        break;
      }
      case OpKind::Up: {
        // x: [IC/16, H, W, 16]  w: [OC/ocg, 2, 2, IC, ocg]  -> y: [OC/16, 2H, 2W, 16]
        const PackedUp& uw = m.ups[op.weights];
        k::UpArgs a;
        a.in = m.view(p, op.in[0], 0, 0);
        a.w = uw.w.data();
        a.bias = uw.b.data();
        a.ocg = uw.ocg;
        a.iw = p.t[op.in[0]].w;
        a.y = m.out_view(p, op.out);
        const int ng = (int)(uw.b.size() / uw.ocg), ih = p.t[op.in[0]].h;
        pool.parallel_for((int64_t)ng * ih, [&](int64_t t) { kn.up(a, (int)(t % ng), (int)(t / ng)); });
        m.zero_border(p, op.out);
        break;
      }
      case OpKind::Head: {
        // x: [C0/16, H, W, 16]  w: [K, C0]  -> out[k*cs + y*rs + x]
        k::HeadArgs a;
        a.in = m.view(p, op.in[0], 0, 0);
        a.w = m.head_w.data();
        a.bias = m.head_b.data();
        a.k = m.arch.classes;
        a.ow = op.ow;
        a.out = out.data;
        a.out_cs = out.channel_stride;
        a.out_rs = out.row_stride;
        a.softmax = head == HeadOutput::Probabilities;
        pool.parallel_for(op.oh, [&](int64_t yy) { kn.head(a, (int)yy); });
        break;
      }
    }
  }
}

}  // namespace unet_rt
