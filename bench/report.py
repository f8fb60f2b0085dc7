"""Turn a `pytest bench/ --benchmark-only --benchmark-json=FILE` result into the README's table.

    python bench/report.py bench.json > table.md

One row per (workload, runner): the median time, the peer's time over ours (> 1: ours is faster;
fp32 and bf16), effective GFLOP/s (the paper network's direct-convolution FLOPs over every tile run,
divided by the time: comparable across runners), for ours the arithmetic actually done (Winograd-
domain GEMM multiplies) as GFLOP/s and % of the measured peak of that arithmetic, and the max relative
error of the logits against PyTorch fp32.
"""
from __future__ import annotations

import json
import sys

NAMES = {"ours-fp32": "ours fp32", "ours-bf16": "ours bf16", "torch": "PyTorch eager fp32",
         "ort": "ONNX Runtime fp32", "ov-f32": "OpenVINO f32", "ov-default": "OpenVINO default"}


def table(data: dict) -> str:
    by: dict = {}
    for b in data["benchmarks"]:
        ei = b.get("extra_info", {})
        if "runner" in ei:
            by.setdefault(ei["workload"], {})[ei["runner"]] = (b["stats"]["median"], ei)
    head = ["workload", "runner", "median (s)", "time / ours fp32", "time / ours bf16", "effective GFLOP/s",
            "ours: GFLOP/s done (% of peak)", "max rel. err vs PyTorch"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl, rs in by.items():
        ours32, ours16 = rs.get("ours-fp32", (None,))[0], rs.get("ours-bf16", (None,))[0]
        for name, (med, ei) in rs.items():
            label = NAMES.get(name, name) + (f" ({ei['precision']})" if name == "ov-default" else "")
            done = (f"{ei['gflops_done']:.0f} ({ei['pct_of_peak']:.0f}% of {ei['peak_gflops']:.0f})"
                    if "gflops_done" in ei else "")
            rows.append("| " + " | ".join([
                f"{wl} ({ei['tiles']} tile(s) of {ei['tile']}, {ei['rounds']} rounds)", label, f"{med:.2f}",
                f"{med / ours32:.2f}" if ours32 else "n/a", f"{med / ours16:.2f}" if ours16 else "n/a",
                f"{ei['effective_gflops']:.0f}", done, f"{ei['maxerr_rel_vs_torch']:.1e}"]) + " |")
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw", mi.get("processor", "?"))
    some = next((v[1] for rs in by.values() for v in rs.values()), {})
    notes = [f"CPU: {cpu}, {some.get('threads', '?')} threads per runner; medians; runners timed one after the "
             f"other in one session; run {data.get('datetime', '?')}."]
    seen = set()
    for rs in by.values():
        for name, (_, ei) in rs.items():
            if ei.get("note") and (name, ei["note"]) not in seen:
                seen.add((name, ei["note"]))
                notes.append(f"- {name}: {ei['note']}")
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
