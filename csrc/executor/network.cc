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
// Environment knobs: UNET_RT_ISA=ref|avx2|avx512|neon (default: the best this CPU has), UNET_RT_WINOGRAD=0
// (direct convolution everywhere), UNET_RT_WINOGRAD_MAX_CHANNELS=N (Winograd only for convs with <= N
// output channels: its transformed weights take 4x the memory, 463 MB instead of 124 MB for the
// paper network). workspace_bytes() covers the activations and the shared Winograd scratch, not the
// weights, nor the per-thread buffers of private bands and tap transforms (about 1 MB per thread).
// UNET_RT_WINOGRAD_RAW_MB=N (default 64 for fp32, none for bf16): Winograd convs whose transformed
// weights would take more than N MB keep the 3x3 taps instead (a quarter of fp32 U, half of bf16 U)
// and transform them per band, transform row and output group on the fly: the paper network's fp32
// executor weights drop from 463 MB to 237 MB (docs/speed.md: Memory). UNET_RT_WINOGRAD_PRIVATE_KB=N (default 3/4 of this core's L2, wino_private_default_bytes): Winograd convs
// whose U is at most 12 MB run private bands of ~N KB of V + M per thread (WinoSchedule; 0: off).
// UNET_RT_WINOGRAD_KC_BLOCKS=N (default: half of L1, wino_kc_blocks): the fp32 GEMM's input blocks per
// pass (0: all in one pass); the same result bit for bit.
// UNET_RT_PROFILE=1: after every forward(), a per-layer, per-phase table (ms, GFLOP/s of the arithmetic
// done, MB moved) on stderr; set_profile()/last_profile() give the same rows to a program.
// Precision::BF16: the Winograd input transform and GEMMs of the tier's bf16 table (kernels.h), U
// stored in bf16 (half the memory); every other op stays fp32.
#include "executor/network.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/env.h"
#include "kernels/kernels.h"
#include "core/geometry.h"
#include "core/memory.h"
#include "executor/pack.h"
#include "executor/memory_layout.h"
#include "core/thread_pool.h"
#include "executor/winograd.h"

namespace unet_rt {

namespace k = kernels;

// Internal hook for tests and benchmarks (csrc/python/kernels.cc): the ISA the next Network built
// on this thread uses ("ref", "avx2", "avx512"; empty: UNET_RT_ISA from the environment, else the
// best this CPU has).
thread_local std::string g_network_isa_override;
// Same for Winograd: -1 = default (UNET_RT_WINOGRAD=0 in the environment turns it off), 0 off, 1 on.
thread_local int g_network_winograd_override = -1;

void print_profile(const std::vector<Network::ProfileRow>& rows, int h, int w, const char* kernels);

// The ISA part of a table's non-GEMM kernel names (the AMX table's transforms are AVX512-BF16's).
static std::string simd_name(const kernels::Kernels& t) {
  return t.bf16 && t.isa == kernels::Isa::Avx512 ? "avx512bf16" : kernels::isa_name(t.isa);
}

namespace {

int blocks16(int c) { return (c + 15) / 16; }

}  // namespace

struct Network::Impl {
  Arch arch;
  const k::Kernels* kern = nullptr;   // fp32 kernels of the ISA tier
  const k::Kernels* wkern = nullptr;  // Winograd kernels: kern, or the tier's bf16 table
  Precision precision = Precision::F32;
  std::string precision_note;
  bool profile = false, profile_print = false;
  std::vector<ProfileRow> prof, prof_sum;
  std::unique_ptr<ThreadPool> pool;
  int pad = 0;  // 1 for same padding (zero border in memory)
  int in_cb = 1;
  std::vector<int> widths;
  std::vector<PackedConv> convs;  // enc.l.conv1, enc.l.conv2 (2l, 2l+1), then dec.l.conv1/2
  std::vector<PackedUp> ups;      // dec.l.up at index l
  AlignedVector<float> head_w, head_b;
  mutable ForkSafeMutex mu;  // fork() waits for a tile in flight (core/thread_pool.h)
  mutable std::map<std::pair<int, int>, MemoryLayout> layouts;
  std::unique_ptr<float, BufferFree> arena;  // alloc_buffer's
  int64_t arena_floats = 0;
  mutable bool arena_to_release = false;  // set when the plan cache was cleared

  bool winograd = true;
  int64_t wino_max_channels = 1 << 30;                                 // convs with more output channels run direct
  double wino_raw_bytes = 64.0 * (1 << 20);                            // larger transformed weights: kept as taps
  double wino_private_bytes = wino_private_default_bytes();            // V + M of a private band (0: no private bands)
  int wino_kc16 = wino_kc_blocks(16), wino_kc32 = wino_kc_blocks(32);  // fp32 GEMM: input blocks per pass
  static constexpr double kPrivateMaxU = 12.0 * (1 << 20);             // private bands for layers with U up to this
  PackedConv pack(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg) const {
    bool all16 = true;
    for (auto& d : ins) all16 = all16 && d.cb == 16;
    if (!(winograd && all16 && w.shape[0] <= wino_max_channels)) return pack_conv(w, b, ins, ocg);
    const double u_bytes = (double)wino_u_bytes((int)w.shape[0], ins, ocg, wkern->bf16);
    return pack_wino(w, b, ins, ocg, *wkern, u_bytes > wino_raw_bytes);
  }

  const MemoryLayout& layout(int h, int w) const;  // cached per tile shape (forward)
  LayoutSpec spec;                                 // what the planner needs (set after packing)
  k::View view(const MemoryLayout& p, int id, int dy, int dx) const;
  k::OutView out_view(const MemoryLayout& p, int id) const;
  void zero_border(const MemoryLayout& p, int id) const;
};

// ---- construction: validation and packing -------------------------------------------------------

// A tensor check_weights has validated.
static const TensorView& need(const Weights& ws, const std::string& name) { return ws.at(name); }

Network::Network(const Arch& arch, const Weights& weights, int threads, Precision precision) : impl_(new Impl) {
  Impl& m = *impl_;
  if (arch.in_channels < 1 || arch.classes < 1 || arch.depth < 1 || arch.depth > 8 || arch.base < 1)
    throw std::invalid_argument("bad architecture: in_channels, classes and base must be >= 1, depth 1..8");
  if ((int64_t)arch.base << arch.depth > (1 << 16))
    throw std::invalid_argument("bad architecture: base * 2^depth too large");
  m.arch = arch;
  check_weights(arch, weights);
  const EnvOptions env = read_env();  // the tuning variables (core/env.h)
  const std::string isa = g_network_isa_override.empty() ? env.isa : g_network_isa_override;
  m.kern = &k::kernels_for(k::isa_from_name(isa));
  m.wkern = m.kern;
  if (precision == Precision::BF16) {
    if (const k::Kernels* b = k::bf16_kernels_for(m.kern->isa, &m.precision_note)) {
      m.wkern = b;
      m.precision = Precision::BF16;
    }
  }
  if (env.profile) m.profile = m.profile_print = *env.profile;
  m.pad = arch.same_padding ? 1 : 0;
  m.winograd = g_network_winograd_override >= 0 ? g_network_winograd_override == 1 : env.winograd;
  if (env.wino_max_channels) m.wino_max_channels = *env.wino_max_channels;
  // bf16 U is already half of fp32's, and its GEMMs are fast enough that the transforms would cost
  // ~5% at 512x512 (docs/speed.md): taps for fp32 only, unless asked.
  if (m.wkern->bf16) m.wino_raw_bytes = 1e300;
  if (env.wino_raw_mb) m.wino_raw_bytes = *env.wino_raw_mb * (1 << 20);
  if (env.wino_private_kb) m.wino_private_bytes = *env.wino_private_kb * 1024;
  if (env.wino_kc_blocks) m.wino_kc16 = m.wino_kc32 = *env.wino_kc_blocks;
  m.in_cb = arch.in_channels < 16 ? arch.in_channels : 16;

  const int D = arch.depth;
  for (int l = 0; l <= D; ++l) m.widths.push_back(arch.base << l);
  int prev = arch.in_channels;
  for (int l = 0; l <= D; ++l) {
    const int c = m.widths[l];
    const std::string p = "enc." + std::to_string(l) + ".";
    std::vector<InDesc> in1 = {l == 0 ? InDesc{prev, m.in_cb, (prev + m.in_cb - 1) / m.in_cb}
                                      : InDesc{prev, 16, blocks16(prev)}};
    m.convs.push_back(
        m.pack(need(weights, p + "conv1.weight"), need(weights, p + "conv1.bias"), in1, m.kern->ocg_for(c)));
    m.convs.push_back(m.pack(need(weights, p + "conv2.weight"), need(weights, p + "conv2.bias"),
                             {InDesc{c, 16, blocks16(c)}}, m.kern->ocg_for(c)));
    prev = c;
  }
  for (int l = 0; l < D; ++l) {
    const int c = m.widths[l];
    const std::string p = "dec." + std::to_string(l) + ".";
    m.ups.push_back(
        pack_up(need(weights, p + "up.weight"), need(weights, p + "up.bias"), m.wkern->ocg_for(c), m.wkern->bf16));
  }
  for (int l = 0; l < D; ++l) {
    const int c = m.widths[l];
    const std::string p = "dec." + std::to_string(l) + ".";
    m.convs.push_back(m.pack(need(weights, p + "conv1.weight"), need(weights, p + "conv1.bias"),
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
  m.spec.arch = arch;
  m.spec.pad = m.pad;
  m.spec.in_cb = m.in_cb;
  m.spec.widths = m.widths;
  for (const PackedConv& c : m.convs)
    m.spec.convs.push_back(LayoutConv{c.wino, c.raw_taps, c.u_bytes, c.wino ? c.groups() * c.ocg / 16 : 0});
  m.spec.bf16 = m.wkern->bf16;
  m.spec.private_bytes = m.wino_private_bytes;
  m.spec.private_max_u = Impl::kPrivateMaxU;
  m.pool = std::make_unique<ThreadPool>(threads);
}

Network::~Network() = default;

const Arch& Network::arch() const { return impl_->arch; }
int Network::threads() const { return impl_->pool->size(); }

int Network::output_size(int size) const {
  return unet_rt::output_size(size, impl_->arch.depth, impl_->arch.same_padding);
}

// ---- planning: ops, tensor lifetimes, memory offsets --------------------------------------------

const MemoryLayout& Network::Impl::layout(int h, int w) const {
  auto key = std::make_pair(h, w);
  auto it = layouts.find(key);
  if (it != layouts.end()) return it->second;
  if (layouts.size() >= Network::kMaxPlans) {
    // Bounded memory for callers that feed ever new tile shapes: start over (the arena, sized for
    // the dropped layouts, goes too; forward() allocates what the next plan needs).
    layouts.clear();
    arena_to_release = true;
  }
  return layouts.emplace(key, build_memory_layout(spec, h, w)).first->second;
}

k::View Network::Impl::view(const MemoryLayout& p, int id, int dy, int dx) const {
  const Tensor& t = p.t[id];
  k::View v;
  v.cb = t.cb;
  v.nblk = t.nblk;
  v.rs = (int64_t)(t.w + 2 * pad) * t.cb;
  v.bs = (int64_t)(t.h + 2 * pad) * v.rs;
  v.p = arena.get() + t.off + (pad + dy) * v.rs + (pad + dx) * t.cb;
  return v;
}

k::OutView Network::Impl::out_view(const MemoryLayout& p, int id) const {
  k::View v = view(p, id, 0, 0);
  return k::OutView{const_cast<float*>(v.p), v.rs, v.bs};
}

void Network::Impl::zero_border(const MemoryLayout& p, int id) const {
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
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  unet_rt::output_size(h, impl_->arch.depth, impl_->arch.same_padding);
  unet_rt::output_size(w, impl_->arch.depth, impl_->arch.same_padding);
  auto it = impl_->layouts.find(std::make_pair(h, w));
  return size_t(it != impl_->layouts.end() ? it->second.floats : build_memory_layout(impl_->spec, h, w).floats) *
         sizeof(float);
}

size_t Network::cached_plans() const {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  return impl_->layouts.size();
}

size_t Network::arena_bytes() const {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  return size_t(impl_->arena_floats) * sizeof(float);
}

// ---- execution ----------------------------------------------------------------------------------

void Network::forward(const float* in, int h, int w, const OutputView& out, HeadOutput head) {
  if (!in) throw std::invalid_argument("forward: null input");
  if (!out.data) throw std::invalid_argument("forward: null output");
  Impl& m = *impl_;
  std::lock_guard<ForkSafeMutex> lk(m.mu);
  unet_rt::output_size(h, m.arch.depth, m.arch.same_padding);  // throws with a clear message
  unet_rt::output_size(w, m.arch.depth, m.arch.same_padding);
  const MemoryLayout& p = m.layout(h, w);
  if (m.arena_to_release) {
    m.arena.reset();
    m.arena_floats = 0;
    m.arena_to_release = false;
  }
  if (p.floats > m.arena_floats) {
    m.arena.reset();
    m.arena.reset(static_cast<float*>(alloc_buffer((size_t)p.floats * sizeof(float))));
    m.arena_floats = p.floats;
  }
  ThreadPool& pool = *m.pool;
  const k::Kernels& kn = *m.kern;
  const ParallelFor pf = [&pool](int64_t n, const std::function<void(int64_t)>& fn) { pool.parallel_for(n, fn); };
  using clk = std::chrono::steady_clock;
  m.prof.clear();
  auto record = [&m](const std::string& layer, const std::string& phase, double sec, double flops, double bytes) {
    m.prof.push_back(ProfileRow{layer, phase, sec, flops, bytes});
  };
  auto tbytes = [&p](int id) { return (double)p.t[id].floats * 4; };
  for (const Op& op : p.ops) {
    const clk::time_point op_t0 = m.profile ? clk::now() : clk::time_point();
    auto op_done = [&](const std::string& phase, double flops, double bytes) {
      if (m.profile) record(op.name, phase, std::chrono::duration<double>(clk::now() - op_t0).count(), flops, bytes);
    };
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
        op_done("reorder_f32", 0, (double)m.arch.in_channels * h * w * 4 + tbytes(op.out));
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
          a.ocb = cw.groups() * cw.ocg / 16;
          a.u = cw.u();
          a.bias = cw.b.data();
          a.ocg = cw.ocg;
          a.oh = op.oh;
          a.ow = op.ow;
          a.th = (op.oh + 3) / 4;
          a.tw = (op.ow + 3) / 4;
          a.y = m.out_view(p, op.out);
          a.relu = true;
          a.kc_blocks = a.ocg == 32 ? m.wino_kc32 : m.wino_kc16;
          WinoSchedule sched;
          sched.band = op.band;
          sched.raw = cw.raw();
          sched.private_band = op.private_band;
          double secs[3] = {0, 0, 0};
          float* vbuf = m.arena.get() + p.act_floats;
          run_winograd(*m.wkern, a, sched, vbuf, vbuf + p.wino_v, pf, m.profile ? secs : nullptr);
          if (m.profile) {
            const int64_t tiles = (int64_t)a.th * a.tw, bt = op.private_band ? op.private_band : op.band,
                          nbands = (tiles + bt - 1) / bt;
            const double esz = m.wkern->bf16 ? 2 : 4, vb = (double)k::wino_v_elems(a.icb, tiles) * esz;
            const double mb = (double)k::wino_m_floats(a.ocb, tiles) * 4;
            const double xb = (double)a.icb * 16 * (op.oh + 2) * (op.ow + 2) * 4,
                         yb = (double)a.ocb * 16 * op.oh * op.ow * 4;
            const std::string dt = m.wkern->bf16 ? "bf16_" : "f32_";
            record(op.name, "conv3x3_wino_in_" + dt + simd_name(*m.wkern), secs[0], 0, xb + vb);
            record(op.name, m.wkern->wino_gemm_name(cw.ocg), secs[1], 2.0 * k::kWinoT * tiles * a.icb * 16 * a.ocb * 16,
                   (double)cw.u_bytes * nbands + vb * cw.groups() + mb);
            record(op.name, std::string("conv3x3_wino_out_f32_") + kn.name, secs[2], 0, mb + yb);
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
        op_done(std::string("conv3x3_direct_f32_") + kn.name, 2.0 * op.oh * op.ow * (double)cw.w.size(),
                in_floats * 4.0 + (double)cw.bytes() + tbytes(op.out));
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
        op_done(std::string("pool2x2_f32_") + kn.name, 0, tbytes(op.in[0]) + tbytes(op.out));
        break;
      }
      case OpKind::Up: {
        // x: [IC/16, H, W, 16]  w: [OC/ocg, 2, 2, IC, ocg]  -> y: [OC/16, 2H, 2W, 16] (bf16: the tier's bf16 up-conv)
        const PackedUp& uw = m.ups[op.weights];
        k::UpArgs a;
        a.in = m.view(p, op.in[0], 0, 0);
        a.w = uw.w.data();
        a.w16 = uw.w16.data();
        a.bias = uw.b.data();
        a.ocg = uw.ocg;
        a.iw = p.t[op.in[0]].w;
        a.y = m.out_view(p, op.out);
        const int ng = (int)(uw.b.size() / uw.ocg), ih = p.t[op.in[0]].h;
        pool.parallel_for((int64_t)ng * ih, [&](int64_t t) { m.wkern->up(a, (int)(t % ng), (int)(t / ng)); });
        m.zero_border(p, op.out);
        op_done(std::string("upconv2x2_") + (m.wkern->bf16 ? "bf16_" : "f32_") + simd_name(*m.wkern),
                2.0 * ih * a.iw * (double)(uw.w.size() + uw.w16.size()),
                tbytes(op.in[0]) + (double)uw.bytes() + tbytes(op.out));
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
        op_done(std::string("head1x1_f32_") + kn.name + (a.softmax ? "+softmax" : ""),
                2.0 * op.oh * op.ow * m.head_w.size(), tbytes(op.in[0]) + (double)op.oh * op.ow * a.k * 4);
        break;
      }
    }
  }
  if (m.profile) {
    if (m.prof_sum.size() != m.prof.size()) m.prof_sum.assign(m.prof.size(), ProfileRow{});
    for (size_t i = 0; i < m.prof.size(); ++i) {
      ProfileRow& r = m.prof_sum[i];
      r.layer = m.prof[i].layer;  // the same op list for every tile shape
      r.phase = m.prof[i].phase;
      r.seconds += m.prof[i].seconds;
      r.flops += m.prof[i].flops;
      r.bytes += m.prof[i].bytes;
    }
  }
  if (m.profile_print) print_profile(m.prof, h, w, m.wkern->name);
}

void print_profile(const std::vector<Network::ProfileRow>& rows, int h, int w, const char* kernels) {
  double total = 0, flops = 0;
  for (auto& r : rows) total += r.seconds, flops += r.flops;
  std::fprintf(stderr, "unet_rt profile: %dx%d tile, kernels %s, %.1f ms, %.1f GFLOP/s (arithmetic done)\n", h, w,
               kernels, total * 1e3, total > 0 ? flops / total * 1e-9 : 0.0);
  std::fprintf(stderr, "  %-12s %-40s %9s %6s %9s %9s\n", "layer", "phase", "ms", "%", "GFLOP/s", "MB");
  for (auto& r : rows)
    std::fprintf(stderr, "  %-12s %-40s %9.2f %6.1f %9.1f %9.1f\n", r.layer.c_str(), r.phase.c_str(), r.seconds * 1e3,
                 total > 0 ? 100 * r.seconds / total : 0.0, r.seconds > 0 ? r.flops / r.seconds * 1e-9 : 0.0,
                 r.bytes / 1e6);
}

Precision Network::precision() const { return impl_->precision; }
const std::string& Network::precision_note() const { return impl_->precision_note; }
std::string Network::kernel_name() const { return impl_->wkern->wino_gemm_name(impl_->wkern->preferred_ocg); }
void Network::set_profile(bool on) {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  if (on && !impl_->profile) impl_->prof_sum.clear();
  impl_->profile = on;
}
std::vector<Network::ProfileRow> Network::last_profile() const {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  return impl_->prof;
}
std::vector<Network::ProfileRow> Network::profile_totals() const {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  return impl_->prof_sum;
}
void Network::reset_profile() {
  std::lock_guard<ForkSafeMutex> lk(impl_->mu);
  impl_->prof_sum.clear();
}
size_t Network::weight_bytes() const {
  size_t n = (impl_->head_w.size() + impl_->head_b.size()) * sizeof(float);
  for (auto& c : impl_->convs) n += c.bytes();
  for (auto& u : impl_->ups) n += u.bytes();
  return n;
}

}  // namespace unet_rt
