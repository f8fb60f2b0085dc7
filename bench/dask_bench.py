"""Scale-out benchmark (``make bench-dask``): one Engine vs unet_rt.scale on 1 and 2 worker processes.

A zarr image (4096² and 8192² uint8, built by tiling the shipped ISBI 2012 test slices with flips) is
segmented with the shipped model (src/unet_rt/models/isbi2012-unet16.plan) by

* ``engine``: one process, ``Engine(model, threads=1)`` on the whole image read into memory
  (``Engine`` picks its own tiles);
* ``dask-1`` / ``dask-2``: ``unet_rt.scale.segment`` on a ``LocalCluster`` of 1 or 2 worker
  processes with 1 thread each, the labels written chunk by chunk into a zarr array.

Reported: wall time, Mpx/s, and the peak RSS (VmHWM) of each process that computed (the single
process; each dask worker). Each configuration runs in fresh processes, so the peaks are its own.
Parity first: the dask labels of the 4096² image equal ``Engine(model, tile=T)``'s bit for bit.

    python bench/dask_bench.py [--sizes 4096 8192] [--block 2048] [--out out/bench-dask]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def vm_hwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_image(path: Path, n: int) -> None:
    import zarr

    from unet_rt.io.images import read_image

    if path.exists():
        return
    slices = [read_image(ROOT / "data" / "samples" / "image" / f"{k}.png") for k in range(25, 30)]
    s = slices[0].shape[0]
    z = zarr.create_array(str(path), shape=(n, n), chunks=(1024, 1024), dtype=np.uint8)
    for i in range(0, n, 1024):
        rows = []
        for r in range(i, min(i + 1024, n), s):
            row = []
            for c in range(0, n, s):
                t = slices[(r // s + c // s) % 5]
                t = t[::-1] if (r // s) % 2 else t
                row.append(t[:, ::-1] if (c // s) % 2 else t)
            rows.append(np.concatenate(row, axis=1)[:, :n])
        z[i:i + 1024] = np.concatenate(rows, axis=0)[:1024]


def run_engine(src: str, model: str) -> dict:
    """Child process: whole image in memory through one Engine."""
    import zarr

    import unet_rt

    img = np.asarray(zarr.open_array(src, mode="r"))
    eng = unet_rt.Engine(model, threads=1)
    t0 = time.perf_counter()
    lab = eng.segment(img)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "rss_mb": [vm_hwm_mb()], "classes": int(lab.max()) + 1}


def run_dask(src: str, model: str, workers: int, block: int, dst: str) -> dict:
    import dask.array as da
    import distributed

    from unet_rt.scale import blocks as ud

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        lab = ud.segment(da.from_zarr(src), model, block=block, threads=1)
        client.run(lambda: None)  # workers up
        t0 = time.perf_counter()
        lab.to_zarr(dst, overwrite=True)
        dt = time.perf_counter() - t0
        rss = sorted(client.run(vm_hwm_mb).values())
    return {"seconds": dt, "rss_mb": rss, "tile": ud._resolve_tile(None, 4, block), "block": block}


def parity(src: str, model: str, block: int) -> None:
    import dask.array as da
    import zarr

    import unet_rt
    from unet_rt.scale import blocks as ud

    img = np.asarray(zarr.open_array(src, mode="r"))[:1500, :1500]
    tile = ud._resolve_tile(None, 4, block)
    got = ud.segment(da.from_array(img, chunks=1024), model, tile=tile, block=512, threads=2)
    ref = unet_rt.Engine(model, tile=tile, threads=2).segment(img)
    if not np.array_equal(got.compute(scheduler="threads"), ref):
        raise SystemExit("parity FAILED: dask labels differ from Engine(tile=%d)" % tile)
    print(f"parity: dask ({got.numblocks} blocks) == Engine(tile={tile}) bit for bit on a 1500x1500 crop",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--model", default=str(ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"))
    ap.add_argument("--out", default=str(ROOT / "out" / "bench-dask"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_engine(*a.child)))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in a.sizes:
        src = out / f"image-{n}.zarr"
        make_image(src, n)
        if n == min(a.sizes):
            parity(str(src), a.model, a.block)
        r = subprocess.run([sys.executable, __file__, "--child", str(src), a.model], capture_output=True, text=True,
                           check=True)
        rows = [("engine (1 process, 1 thread)", json.loads(r.stdout.strip().splitlines()[-1]))]
        for w in (1, 2):
            dst = out / f"labels-{n}-{w}.zarr"
            rows.append((f"dask, {w} worker(s) x 1 thread", run_dask(str(src), a.model, w, a.block, str(dst))))
            shutil.rmtree(dst, ignore_errors=True)
        for name, d in rows:
            d.update(size=n, config=name, mpx_s=n * n / 1e6 / d["seconds"])
            results.append(d)
            (out / "results.json").write_text(json.dumps({"cpu": cpu_name(), "results": results}, indent=1))
            print(f"{n}x{n}  {name:32s} {d['seconds']:8.1f} s  {d['mpx_s']:6.3f} Mpx/s  peak RSS "
                  + ", ".join(f"{m:.0f}" for m in d["rss_mb"]) + " MB", flush=True)
    meta = {"cpu": cpu_name(), "cores": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": a.model, "block": a.block, "results": results}
    (out / "results.json").write_text(json.dumps(meta, indent=1))
    print(f"CPU: {meta['cpu']} ({meta['cores']} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
