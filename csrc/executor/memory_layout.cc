// The memory planner: see memory_layout.h.
#include "executor/memory_layout.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "core/geometry.h"
#include "executor/winograd.h"

namespace unet_rt {

namespace {
constexpr int64_t kAlign = 16;  // floats (64 bytes)
int blocks16(int c) { return (c + 15) / 16; }
}  // namespace

MemoryLayout build_memory_layout(const LayoutSpec& s, int h, int w) {
  const Arch& arch = s.arch;
  const std::vector<int>& widths = s.widths;
  const int D = arch.depth, P = s.pad, shrink = arch.same_padding ? 0 : 2;
  MemoryLayout p;
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
  auto conv = [&](int widx, std::vector<std::pair<int, int>> ins, int oc, std::string name) {  // (tensor, crop offset)
    Op op;
    op.kind = OpKind::Conv;
    op.name = std::move(name);
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
  r.name = "input";
  r.out = add((arch.in_channels + s.in_cb - 1) / s.in_cb, s.in_cb, h, w);
  r.oh = h;
  r.ow = w;
  p.ops.push_back(r);
  int cur = r.out;
  std::vector<int> skips;
  for (int l = 0; l <= D; ++l) {
    const std::string e = "enc." + std::to_string(l) + ".";
    cur = conv(enc_conv(l, 0), {{cur, 0}}, widths[l], e + "conv1");
    cur = conv(enc_conv(l, 1), {{cur, 0}}, widths[l], e + "conv2");
    skips.push_back(cur);
    if (l < D) {
      Op op;
      op.kind = OpKind::Pool;
      op.name = e + "pool";
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
    const std::string d = "dec." + std::to_string(l) + ".";
    op.name = d + "up";
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
    c.name = d + "conv1";
    c.weights = dec_conv(arch, l, 0);
    c.nin = 2;
    c.in[0] = skips[l];
    c.dy[0] = c.dx[0] = crop - P;
    c.in[1] = op.out;
    c.dy[1] = c.dx[1] = -P;
    c.oh = op.oh - shrink;
    c.ow = op.ow - shrink;
    c.out = add(blocks16(widths[l]), 16, c.oh, c.ow);
    p.ops.push_back(c);
    cur = conv(dec_conv(arch, l, 1), {{c.out, 0}}, widths[l], d + "conv2");
  }
  Op hd;
  hd.kind = OpKind::Head;
  hd.name = "head";
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
    if (op.kind != OpKind::Conv || !s.convs[op.weights].wino) continue;
    const LayoutConv& cw = s.convs[op.weights];
    int icb = 0;
    for (int i = 0; i < op.nin; ++i) icb += p.t[op.in[i]].nblk;
    const int64_t tiles = (int64_t)((op.oh + 3) / 4) * ((op.ow + 3) / 4);
    if (!cw.raw_taps && s.private_bytes > 0 && cw.u_bytes <= s.private_max_u) {
      // U stays cached while each thread runs its own L2-sized bands (V and M in thread buffers)
      op.private_band = wino_private_band(icb, cw.ocb, tiles, s.private_bytes, s.bf16);
      continue;
    }
    op.band = wino_band(icb, cw.ocb, tiles, (double)cw.u_bytes, s.bf16);
    p.wino_v = std::max(p.wino_v, (wino_v_bytes(icb, op.band, s.bf16) / 4 + kAlign - 1) / kAlign * kAlign);
    p.wino_m = std::max(p.wino_m, (wino_m_bytes(cw.ocb, op.band) / 4 + kAlign - 1) / kAlign * kAlign);
  }
  p.floats = p.act_floats + p.wino_v + p.wino_m;
  return p;
}

}  // namespace unet_rt
