"""Triton kernels of the U-Net: 3x3 conv (implicit GEMM, 1 or 2 sources, bias + ReLU, optional fused
2x2 max-pool), 2x2 stride-2 up-conv (one GEMM over all four output phases), 1x1 head (+ softmax, argmax).

Activations are NHWC ("channels last"): the GEMM's K dimension (input channels) is contiguous in
memory. Every kernel takes explicit strides, so a cropped skip is just a strided view (pointer +
crop offset), and the first conv reads the caller's NCHW float32 input directly (a channel stride
of H*W) and casts it to the storage dtype on load — no reorder pass and no concatenated tensor.
Accumulation is always fp32; storage is whatever the tensors hold (fp16 / bf16 / fp32).

Import this module only after deciding about TRITON_INTERPRET (see ``engine._kernels``): Triton
reads that variable when the ``@triton.jit`` decorators below run.
"""
from __future__ import annotations

import triton
import triton.language as tl


# -------------------------------------------------------------------------------------------------
# conv3x3: y[b, oh, ow, n] = relu(bias[n] + sum_{kh,kw,c} x[b, oh+kh-PAD, ow+kw-PAD, c] * w[kh,kw,c,n])
# GEMM view: M = B*OH*OW output pixels, N = output channels, K = 9*(C1 + C2).
# Packed weights: w1 [9*C1, N] (row = (kh*3+kw)*C1 + c), w2 [9*C2, N] for the second source.
# Two sources (decoder conv1): source 1 = the cropped skip (a strided view), source 2 = the up-sampled
# tensor; the K loop runs over source 1 then source 2, exactly the channel order of torch.cat([skip, up]).
# FUSE_POOL: M is enumerated 2x2-window-major (m = window*4 + q), so each group of 4 consecutive GEMM
# rows is one pooling window; the epilogue stores the full map (the skip) AND its 2x2 max (the next
# level's input). Needs OH, OW even (always true before a U-Net pool).
# -------------------------------------------------------------------------------------------------
@triton.jit
def _accumulate_taps(acc, x_ptr, row, sh, sw, sc, w_ptr, C, N, offs_k, offs_n, n_ok, m_ok, ih0, iw0, H, W,
                     PAD: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_K: tl.constexpr):
    """acc += one source's 3x3 taps: x at (row + tap offsets) [BM, C] times packed w [9*C, N].

    One runtime loop over (tap, channel block): a uniform body that the compiler software-pipelines
    across taps (an unrolled 9-tap loop of short channel loops would not pipeline)."""
    nck = tl.cdiv(C, BLOCK_K)
    for it in range(0, 9 * nck):
        tap = it // nck
        c0 = (it - tap * nck) * BLOCK_K
        kh = tap // 3
        kw = tap - kh * 3
        p_ok = m_ok
        if PAD:
            p_ok = p_ok & (ih0 + kh >= 0) & (ih0 + kh < H) & (iw0 + kw >= 0) & (iw0 + kw < W)
        cc = c0 + offs_k
        c_ok = cc < C
        a = tl.load(x_ptr + (row + (kh * sh + kw * sw))[:, None] + (cc * sc)[None, :],
                    mask=p_ok[:, None] & c_ok[None, :], other=0.0)
        wt = tl.load(w_ptr + (tap * C + cc)[:, None] * N + offs_n[None, :],
                     mask=c_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a.to(wt.dtype), wt, acc, input_precision=DOT_PREC)
    return acc


@triton.jit
def conv3x3_kernel(
    x1_ptr, x2_ptr, w1_ptr, w2_ptr, b_ptr, y_ptr, p_ptr,
    B, H, W, OH, OW, C1, C2, N,
    s1b, s1h, s1w, s1c,
    s2b, s2h, s2w, s2c,
    syb, syh, syw,
    spb, sph, spw,
    PAD: tl.constexpr, TWO: tl.constexpr, FUSE_POOL: tl.constexpr, RELU: tl.constexpr,
    FLAT_K: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // num_n          # N blocks of one M block run next to each other: the A tile is reused from L2
    pid_n = pid % num_n
    M = B * OH * OW

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    n_ok = offs_n < N

    if FUSE_POOL:
        PW = OW // 2
        PH = OH // 2
        q = offs_m % 4
        t = offs_m // 4
        pw = t % PW
        t = t // PW
        ph = t % PH
        bb = t // PH
        oh = 2 * ph + q // 2
        ow = 2 * pw + q % 2
    else:
        ow = offs_m % OW
        t = offs_m // OW
        oh = t % OH
        bb = t // OH
    bb = bb.to(tl.int64)
    ih0 = oh - PAD
    iw0 = ow - PAD

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)

    # ---- source 1 ----
    row1 = bb * s1b + ih0.to(tl.int64) * s1h + iw0.to(tl.int64) * s1w                     # [BM] int64, offset of tap (0, 0)
    if FLAT_K:
        # K flattened over (tap, channel): for few input channels (the first layer, C1 = 1..15)
        K1 = 9 * C1
        for k0 in range(0, K1, BLOCK_K):
            kk = k0 + offs_k
            tap = kk // C1
            cc = kk % C1
            kh = tap // 3
            kw = tap % 3
            k_ok = kk < K1
            a_mask = m_ok[:, None] & k_ok[None, :]
            if PAD:
                ih = ih0[:, None] + kh[None, :]
                iw = iw0[:, None] + kw[None, :]
                a_mask = a_mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x1_ptr + row1[:, None] + (kh * s1h + kw * s1w + cc * s1c)[None, :], mask=a_mask, other=0.0)
            wt = tl.load(w1_ptr + kk[:, None] * N + offs_n[None, :], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
            acc = tl.dot(a.to(wt.dtype), wt, acc, input_precision=DOT_PREC)
    else:
        acc = _accumulate_taps(acc, x1_ptr, row1, s1h, s1w, s1c, w1_ptr, C1, N, offs_k, offs_n, n_ok, m_ok,
                               ih0, iw0, H, W, PAD, DOT_PREC, BLOCK_K)

    # ---- source 2 (decoder conv1: the up-sampled half of the virtual concatenation) ----
    if TWO:
        row2 = bb * s2b + ih0.to(tl.int64) * s2h + iw0.to(tl.int64) * s2w
        acc = _accumulate_taps(acc, x2_ptr, row2, s2h, s2w, s2c, w2_ptr, C2, N, offs_k, offs_n, n_ok, m_ok,
                               ih0, iw0, H, W, PAD, DOT_PREC, BLOCK_K)

    # ---- epilogue: bias, ReLU, store (and 2x2 max-pool) ----
    bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
    acc = acc + bias[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    y_row = bb * syb + oh.to(tl.int64) * syh + ow.to(tl.int64) * syw
    tl.store(y_ptr + y_row[:, None] + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])
    if FUSE_POOL:
        pooled = tl.max(tl.reshape(acc, (BLOCK_M // 4, 4, BLOCK_N)), axis=1)    # [BM/4, BN]
        offs_w = pid_m * (BLOCK_M // 4) + tl.arange(0, BLOCK_M // 4)             # window index
        w_ok = offs_w < M // 4
        qw = offs_w % PW
        t2 = offs_w // PW
        qh = t2 % PH
        qb = (t2 // PH).to(tl.int64)
        p_row = qb * spb + qh.to(tl.int64) * sph + qw.to(tl.int64) * spw
        tl.store(p_ptr + p_row[:, None] + offs_n[None, :], pooled.to(p_ptr.dtype.element_ty),
                 mask=w_ok[:, None] & n_ok[None, :])


# -------------------------------------------------------------------------------------------------
# upconv2x2 (ConvTranspose2d k=2 s=2): y[b, 2i+di, 2j+dj, co] = bias[co] + sum_ci x[b, i, j, ci] * w[ci, co, di, dj]
# One GEMM for all four phases: M = B*H*W input pixels, N = 4*CO (column n = (di*2+dj)*CO + co), K = CI.
# Packed weights: w [CI, 4*CO]. The epilogue scatters each column to its phase. No ReLU (paper).
# -------------------------------------------------------------------------------------------------
@triton.jit
def upconv2x2_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    B, H, W, CI, CO,
    sxb, sxh, sxw, sxc,
    syb, syh, syw,
    DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    N = 4 * CO
    num_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // num_n
    pid_n = pid % num_n
    M = B * H * W

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    n_ok = offs_n < N

    j = offs_m % W
    t = offs_m // W
    i = t % H
    bb = (t // H).to(tl.int64)
    x_row = bb * sxb + i.to(tl.int64) * sxh + j.to(tl.int64) * sxw

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, CI, BLOCK_K):
        kk = k0 + offs_k
        k_ok = kk < CI
        a = tl.load(x_ptr + x_row[:, None] + (kk * sxc)[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        wt = tl.load(w_ptr + kk[:, None] * N + offs_n[None, :], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a.to(wt.dtype), wt, acc, input_precision=DOT_PREC)

    phase = offs_n // CO
    co = offs_n % CO
    di = phase // 2
    dj = phase % 2
    bias = tl.load(b_ptr + co, mask=n_ok, other=0.0).to(tl.float32)
    acc = acc + bias[None, :]
    y_row = bb * syb + (2 * i).to(tl.int64) * syh + (2 * j).to(tl.int64) * syw
    y_col = di * syh + dj * syw + co
    tl.store(y_ptr + y_row[:, None] + y_col[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


# -------------------------------------------------------------------------------------------------
# head1x1: logits[b, k, h, w] = bias[k] + sum_c x[b, h, w, c] * w[c, k]  (fp32 math, NCHW fp32 outputs)
# plus, optionally, softmax probabilities [B, K, H, W] and argmax labels [B, H, W] (int32).
# K (classes) is small: the product is a broadcast-multiply-reduce in registers, no tensor cores.
# -------------------------------------------------------------------------------------------------
@triton.jit
def head1x1_kernel(
    x_ptr, w_ptr, b_ptr, logit_ptr, prob_ptr, label_ptr,
    B, H, W, C, K,
    sxb, sxh, sxw, sxc,
    WRITE_LOGITS: tl.constexpr, WRITE_PROBS: tl.constexpr, WRITE_LABELS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CLS: tl.constexpr,
):
    pid = tl.program_id(0)
    M = B * H * W
    HW = H * W
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = tl.arange(0, BLOCK_C)
    offs_k = tl.arange(0, BLOCK_CLS)
    m_ok = offs_m < M
    k_ok = offs_k < K

    hw = offs_m % HW
    bb = (offs_m // HW).to(tl.int64)
    wi = hw % W
    hi = hw // W
    x_row = bb * sxb + hi.to(tl.int64) * sxh + wi.to(tl.int64) * sxw

    acc = tl.zeros((BLOCK_M, BLOCK_CLS), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cc = c0 + offs_c
        c_ok = cc < C
        a = tl.load(x_ptr + x_row[:, None] + (cc * sxc)[None, :], mask=m_ok[:, None] & c_ok[None, :], other=0.0)
        wt = tl.load(w_ptr + cc[:, None] * K + offs_k[None, :], mask=c_ok[:, None] & k_ok[None, :], other=0.0)
        acc += tl.sum(a.to(tl.float32)[:, :, None] * wt.to(tl.float32)[None, :, :], axis=1)
    bias = tl.load(b_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    acc = acc + bias[None, :]

    out_row = bb * K * HW + hw                      # [BM]  offset of class 0 in an NCHW [B, K, H, W] tensor
    out_col = offs_k.to(tl.int64) * HW              # [BCLS]
    mask2 = m_ok[:, None] & k_ok[None, :]
    if WRITE_LOGITS:
        tl.store(logit_ptr + out_row[:, None] + out_col[None, :], acc, mask=mask2)
    if WRITE_PROBS or WRITE_LABELS:
        z = tl.where(k_ok[None, :], acc, float("-inf"))
        if WRITE_PROBS:
            zmax = tl.max(z, axis=1)
            e = tl.exp(z - zmax[:, None])
            p = e / tl.sum(e, axis=1)[:, None]
            tl.store(prob_ptr + out_row[:, None] + out_col[None, :], p, mask=mask2)
        if WRITE_LABELS:
            lab = tl.argmax(z, axis=1)
            tl.store(label_ptr + bb * HW + hw, lab.to(tl.int32), mask=m_ok)
