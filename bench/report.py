"""Turn a `pytest bench/ --benchmark-only --benchmark-json=FILE` result into the README's table.

    python bench/report.py bench.json > table.md

One row per (workload, runner), from the interleaved benchmark (test_interleaved: every runner timed
round by round in rotating order): its median time, the time over ours fp32 and over ours bf16
(> 1: ours is faster), effective GFLOP/s (the paper network's direct-convolution FLOPs over every tile
run, divided by the time: comparable across runners), the max relative error of the logits against
PyTorch fp32, and from the per-runner benchmark (test_cpu, a block of rounds per runner) its median
and, for ours, the arithmetic actually done (Winograd-domain GEMM multiplies) as GFLOP/s and % of the
measured peak of that arithmetic.
"""
from __future__ import annotations

import json
import sys

NAMES = {"ours-fp32": "ours fp32", "ours-bf16": "ours bf16", "torch": "PyTorch eager fp32",
         "ort": "ONNX Runtime fp32", "ov-f32": "OpenVINO f32", "ov-default": "OpenVINO default"}


def table(data: dict) -> str:
    block: dict = {}
    inter: dict = {}
    for b in data["benchmarks"]:
        ei = b.get("extra_info", {})
        if ei.get("interleaved"):
            inter[ei["workload"]] = ei
        elif "runner" in ei:
            block.setdefault(ei["workload"], {})[ei["runner"]] = (b["stats"]["median"], ei)
    head = ["workload", "runner", "median (s)", "time / ours fp32", "time / ours bf16", "effective GFLOP/s",
            "max rel. err vs PyTorch", "per-runner median (s)", "ours: GFLOP/s done (% of peak)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl, ei in inter.items():
        r32, r16 = ei.get("ratio_to_ours_fp32", {}), ei.get("ratio_to_ours_bf16", {})
        for name, med in ei["median"].items():
            prec = ei["precision"][name]
            label = NAMES.get(name, name) + (f" ({prec})" if name == "ov-default" else "")
            bmed, bei = block.get(wl, {}).get(name, (None, {}))
            done = (f"{bei['gflops_done']:.0f} ({bei['pct_of_peak']:.0f}% of {bei['peak_gflops']:.0f})"
                    if "gflops_done" in bei else "")
            rows.append("| " + " | ".join([
                f"{wl} ({ei['tiles']} tile(s) of {ei['tile']}, {ei['rounds']} rounds)", label, f"{med:.2f}",
                f"{r32[name]:.2f}" if name in r32 else "n/a", f"{r16[name]:.2f}" if name in r16 else "n/a",
                f"{ei['effective_gflops'][name]:.0f}", f"{ei['maxerr_rel_vs_torch'][name]:.1e}",
                f"{bmed:.2f}" if bmed else "", done]) + " |")
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw", mi.get("processor", "?"))
    flags = mi.get("cpu", {}).get("flags", [])
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)
    some = next(iter(inter.values()), {})
    notes = [f"CPU: {cpu} ({isa or 'ISA flags not reported'}), {some.get('threads', '?')} threads per runner; "
             f"medians of rounds interleaved runner by runner; run {data.get('datetime', '?')}."]
    seen = set()
    for ei in inter.values():
        for name, note in ei.get("notes", {}).items():
            if note and (name, note) not in seen:
                seen.add((name, note))
                notes.append(f"- {name}: {note}")
    for ei in inter.values():
        for name, err in ei.get("maxerr_rel_vs_torch", {}).items():
            if isinstance(err, str):
                notes.append(f"- {name} ({ei['workload']}): {err}")
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        sys.stdout.write(table(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
