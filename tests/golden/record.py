"""Golden outputs of the shipped model on the shipped samples: SHA-256 of every array and file the
public surfaces produce (Engine labels / probabilities / instances, CLI files with their metadata,
the dask graph's results). A refactoring that claims "no change in behaviour" must reproduce them bit
for bit (tests/test_golden.py). Hashes depend on the kernel tier (rounding differs between ISAs), so
they are stored per ISA tier; record a tier with

    python tests/golden/record.py               # the tier this CPU picks
    UNET_RT_ISA=avx2 python tests/golden/record.py

Run from the repository root with the package installed (make install).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples" / "image"
MODEL = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
GOLDEN = Path(__file__).with_name("golden.json")
THREADS = 2


def model_path() -> Path:
    return MODEL


def digest_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def digest_tree(path: Path) -> str:
    """A file's bytes, or a directory's files (relative path + bytes, in sorted order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def tier() -> str:
    import unet_rt

    eng = unet_rt.Engine(model_path(), threads=THREADS)
    return str(eng.info["isa"])


def compute() -> dict:
    import unet_rt
    from PIL import Image

    out: dict[str, str] = {}
    model = model_path()
    eng = unet_rt.Engine(model, threads=THREADS)
    imgs = {p.stem: np.asarray(Image.open(p)) for p in sorted(SAMPLES.glob("*.png"))}
    for name, img in imgs.items():
        out[f"engine/{name}/labels"] = digest_array(eng.segment(img))
        out[f"engine/{name}/probabilities"] = digest_array(eng.predict(img))
        out[f"engine/{name}/instances"] = digest_array(eng.instances(img))
    out["engine/25/probabilities-tta"] = digest_array(eng.predict(imgs["25"], tta=True))
    stack = np.stack([imgs["23"], imgs["24"]])
    out["engine/stack23-24/labels"] = digest_array(eng.segment(stack))
    out["engine/25/labels-threshold0.3"] = digest_array(eng.segment(imgs["25"], threshold=0.3))
    out["engine/25-crop/labels"] = digest_array(eng.segment(imgs["25"][3:300, 17:333]))

    # the CLI's files, metadata included (PNG, TIFF with ImageJ metadata, OME-TIFF, OME-Zarr)
    exe = Path(sys.executable).with_name("unet-rt")
    src = SAMPLES / "25.png"
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        runs = {
            "cli/25.png": ["segment", str(src), "-o", str(d / "a.png"), "--overlay"],
            "cli/25-raw.tif": ["segment", str(src), "-o", str(d / "b.tif"), "--raw"],
            "cli/25-probs.tif": ["segment", str(src), "-o", str(d / "c.tif"), "--probabilities"],
            "cli/25-instances.png": ["segment", str(src), "-o", str(d / "e.png"), "--instances"],
            "cli/25.ome.zarr": ["segment", str(src), "-o", str(d / "f.ome.zarr")],
        }
        for _key, argv in runs.items():
            subprocess.run([str(exe), *argv, "-m", str(model), "--threads", str(THREADS), "-q"], check=True,
                           env=dict(os.environ))
        out["cli/25.png"] = digest_tree(d / "a.png")
        out["cli/25-overlay.png"] = digest_tree(d / "a-overlay.png")
        out["cli/25-raw.tif"] = digest_tree(d / "b.tif")
        out["cli/25-probs.tif"] = digest_tree(d / "c.tif")
        out["cli/25-instances.png"] = digest_tree(d / "e.png")
        out["cli/25.ome.zarr"] = digest_tree(d / "f.ome.zarr")

    # the dask graph (synchronous scheduler: the same blocks and arithmetic as on a cluster)
    try:
        import dask
        from unet_rt import scale as ud
    except ImportError:
        return out
    big = np.tile(imgs["26"], (2, 2))[:900, :1000]
    with dask.config.set(scheduler="synchronous"):
        out["dask/26x4/labels"] = digest_array(ud.segment(big, str(model), block=512, threads=THREADS).compute())
        out["dask/26x4/probabilities"] = digest_array(ud.predict(big, str(model), block=512, threads=THREADS).compute())
        out["dask/26x4/instances"] = digest_array(ud.instances(big, str(model), block=512, threads=THREADS).compute())
    return out


def main() -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    t = tier()
    golden[t] = compute()
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"{GOLDEN}: tier {t}, {len(golden[t])} digests")


if __name__ == "__main__":
    main()
