"""Turn a `pytest bench/ --benchmark-only --benchmark-json=FILE` result into the README's table.

    python bench/report.py bench.json > table.md

Speedup = peer time / our time on the same workload, measured interleaved in the same run (>1: ours
is faster). GFLOP/s is *effective*: the paper network's direct-convolution multiply-adds x 2 over
every tile actually run, divided by the time. Ours runs the 3x3 convs as Winograd F(4x4,3x3) (4x
fewer multiplies), so its effective rate can exceed the machine's peak; the peak is the FMA
throughput measured by a probe between rounds (a busy machine lowers both).
"""
from __future__ import annotations

import json
import sys

PEERS = [("torch", "PyTorch eager fp32"), ("ort", "ONNX Runtime fp32"),
         ("ov-f32", "OpenVINO f32"), ("ov-default", "OpenVINO default (bf16 here)")]


def _fmt_speedup(ei: dict, peer: str) -> str:
    if f"{peer}_s" not in ei:
        return "n/a"
    return f"{ei[f'speedup_vs_{peer}']:.2f}x ({ei[f'{peer}_s']:.2f} s)"


def table(data: dict) -> str:
    rows = []
    head = ["workload", "ours (s)", "ours effective GFLOP/s (% of peak)"] + [f"vs {name}" for _, name in PEERS] + \
           ["max rel. err vs PyTorch: ours / OV default"]
    rows.append("| " + " | ".join(head) + " |")
    rows.append("|" + "---|" * len(head))
    for b in data["benchmarks"]:
        ei = b.get("extra_info", {})
        if "ours_s" not in ei:
            continue
        err = f"{ei.get('maxerr_rel_ours_vs_torch', float('nan')):.1e} / {ei.get('maxerr_rel_ov-default_vs_torch', float('nan')):.1e}"
        cells = [f"{ei['workload']}, {ei.get('rounds', '?')} round(s)", f"{ei['ours_s']:.2f}",
                 f"{ei['ours_gflops']:.0f} ({100 * ei['ours_efficiency']:.0f}% of {ei['peak_gflops']:.0f})"]
        cells += [_fmt_speedup(ei, p) for p, _ in PEERS]
        cells.append(err)
        rows.append("| " + " | ".join(cells) + " |")
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw", mi.get("processor", "?"))
    some = next((b["extra_info"] for b in data["benchmarks"] if "runners" in b.get("extra_info", {})), {})
    notes = [f"CPU: {cpu}, {some.get('threads', '?')} threads per runner; medians of interleaved rounds; "
             f"run {data.get('datetime', '?')}."]
    for k, v in some.get("runners", {}).items():
        notes.append(f"- {k}: {v}")
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
