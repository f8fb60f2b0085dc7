"""Compile the Triton kernels ahead of time for NVIDIA targets, without a GPU (run as a script, with
TRITON_INTERPRET unset: under the interpreter @triton.jit does not build compilable functions).

    python tests/triton/aot_compile.py 80 90      -> one JSON line per compiled variant (~50 s)
    python tests/triton/aot_compile.py --configs  -> every autotune config of ops.py, sm80 / sm90
    python tests/triton/aot_compile.py --quick    -> the subset the test suite runs

Goes through Triton's real pipeline (TTIR -> TTGIR -> LLVM -> PTX -> ptxas -> cubin). Integer
arguments get the same specialisations Triton's JIT gives a real paper-network launch: channel
strides of 1 become constants, pointers and channel counts / pixel strides (multiples of 16 there)
get a divisibility-16 hint. Reports whether the K loop was software-pipelined (async copies) and,
on sm90, whether it uses wgmma.
"""
import json
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("aot_compile.py: unset TRITON_INTERPRET")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from unet_rt.backends.triton import kernels as K  # noqa: E402

DIV16 = {"C1", "C2", "N", "CI", "CO", "C", "s1b", "s1h", "s1w", "s2b", "s2h", "s2w", "syb", "syh", "syw",
         "spb", "sph", "spw", "sxb", "sxh", "sxw"}
ONE = {"s1c", "s2c", "sxc"}


def compile_one(fn, cc, dt, consts, warps=4, stages=3):
    consts = dict(consts)
    for n in ONE & set(fn.arg_names):
        consts[n] = 1
    sig, attrs = {}, {}
    for i, n in enumerate(fn.arg_names):
        if n in consts:
            sig[n] = "constexpr"
        elif n.endswith("_ptr"):
            sig[n] = {"b_ptr": "*fp32", "w_ptr": "*fp32" if fn is K.head1x1_kernel else f"*{dt}",
                      "logit_ptr": "*fp32", "prob_ptr": "*fp32", "label_ptr": "*i32"}.get(n, f"*{dt}")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[n] = "i32"
            if n in DIV16:
                attrs[(i,)] = [["tt.divisibility", 16]]
    t0 = time.time()
    k = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", cc, 32),
                       options={"num_warps": warps, "num_stages": stages})
    g = k.asm["ttgir"]
    return {"kernel": fn.__name__, "sm": cc, "dtype": dt,
            "variant": {k2: v for k2, v in consts.items() if k2 not in ONE and not k2.startswith("BLOCK")},
            "cubin_bytes": len(k.asm["cubin"]), "shared": k.metadata.shared, "seconds": round(time.time() - t0, 2),
            "async_copies": g.count("async_copy_global_to_local"), "wgmma": g.count("warp_group_dot")}


def quick():
    """The subset tests/triton/test_triton_compile.py runs (a few seconds per compile on 2 cores)."""
    blocks = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32)
    conv = dict(PAD=0, TWO=True, FUSE_POOL=False, RELU=True, FLAT_K=False, DOT_PREC="tf32", **blocks)
    pool = dict(conv, TWO=False, FUSE_POOL=True, PAD=1)
    first = dict(conv, TWO=False, FLAT_K=True)
    out = [compile_one(K.conv3x3_kernel, 80, "fp16", conv), compile_one(K.conv3x3_kernel, 80, "bf16", pool),
           compile_one(K.conv3x3_kernel, 90, "fp16", pool), compile_one(K.conv3x3_kernel, 90, "bf16", first),
           compile_one(K.upconv2x2_kernel, 90, "fp16", dict(DOT_PREC="tf32", **blocks)),
           compile_one(K.head1x1_kernel, 90, "fp16", dict(WRITE_LOGITS=True, WRITE_PROBS=True, WRITE_LABELS=True,
                                                          BLOCK_M=128, BLOCK_C=32, BLOCK_CLS=2))]
    for r in out:
        print(json.dumps(r), flush=True)


def autotune_configs():
    """Every autotune config of ops.py compiles for its generation (the two-source conv, fp16)."""
    from unet_rt.backends.triton.ops import GEMM_CONFIGS_AMPERE, GEMM_CONFIGS_HOPPER

    for cc, configs in ((80, GEMM_CONFIGS_AMPERE), (90, GEMM_CONFIGS_HOPPER)):
        for c in configs:
            consts = dict(PAD=0, TWO=True, FUSE_POOL=False, RELU=True, FLAT_K=False, DOT_PREC="tf32", **c.kwargs)
            r = compile_one(K.conv3x3_kernel, cc, "fp16", consts, warps=c.num_warps, stages=c.num_stages)
            r["config"] = c.kwargs
            print(json.dumps(r), flush=True)


def main(ccs):
    blocks = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32)
    for cc in ccs:
        for dt in ("fp16", "bf16"):
            for flat, two, pool, pad in [(True, False, False, 0), (False, False, True, 0),
                                         (False, True, False, 0), (False, False, True, 1)]:
                consts = dict(PAD=pad, TWO=two, FUSE_POOL=pool, RELU=True, FLAT_K=flat, DOT_PREC="tf32", **blocks)
                print(json.dumps(compile_one(K.conv3x3_kernel, cc, dt, consts)), flush=True)
            print(json.dumps(compile_one(K.upconv2x2_kernel, cc, dt, dict(DOT_PREC="tf32", **blocks))), flush=True)
        print(json.dumps(compile_one(K.conv3x3_kernel, cc, "fp32", dict(
            PAD=0, TWO=True, FUSE_POOL=False, RELU=True, FLAT_K=False, DOT_PREC="ieee", BLOCK_M=64, BLOCK_N=32,
            BLOCK_K=32))), flush=True)
        print(json.dumps(compile_one(K.head1x1_kernel, cc, "fp16", dict(
            WRITE_LOGITS=True, WRITE_PROBS=True, WRITE_LABELS=True, BLOCK_M=128, BLOCK_C=32, BLOCK_CLS=2))),
            flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--quick"]:
        quick()
    elif sys.argv[1:] == ["--configs"]:
        autotune_configs()
    else:
        main([int(a) for a in sys.argv[1:]] or [80, 90])
