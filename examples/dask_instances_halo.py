"""How close ``unet_rt.scale.instances`` comes to the whole-image ``Engine.instances`` (docs/dask.md).

    python examples/dask_instances_halo.py [--block 128] [--halo 32 64 128] [IMAGE ...]

For each image (default: data/samples/image/*.png) and halo: the number of objects, the adapted
Rand error against the whole-image pass (scikit-image), how many of the whole-image objects come
out with exactly the same pixels, and whether the label arrays are equal outright. Uses the shipped model and its calibrated decision.
"""
import argparse
import glob
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.metrics import adapted_rand_error

import unet_rt
from unet_rt.scale import blocks as ud
from unet_rt.format.model_file import SHIPPED_MODEL as DEFAULT_MODEL
from unet_rt.io.images import read_image


def identical(ref: np.ndarray, got: np.ndarray) -> int:
    """How many objects of ref appear in got with exactly the same pixel set."""
    sizes = np.bincount(got.ravel())
    n = 0
    for k, sl in enumerate(ndimage.find_objects(ref), 1):
        if sl is None:
            continue
        m = ref[sl] == k
        v = np.unique(got[sl][m])
        n += len(v) == 1 and v[0] > 0 and sizes[v[0]] == m.sum()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--halo", type=int, nargs="+", default=[32, 64, 128])
    a = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    images = a.images or sorted(glob.glob(str(root / "data/samples/image/*.png")))
    tile = ud._default_tile(4, a.block)
    eng = unet_rt.Engine(DEFAULT_MODEL, tile=tile)
    total = {h: [0, 0, 0.0, 0, 0] for h in a.halo}  # identical, objects, worst error, count difference, equal arrays
    for f in images:
        img = read_image(f)
        ref = eng.instances(img)
        row = []
        for h in a.halo:
            got = ud.instances(img, DEFAULT_MODEL, block=a.block, halo=h).compute(scheduler="threads")
            err = adapted_rand_error(ref, got, ignore_labels=(0,))[0]
            same = identical(ref, got)
            t = total[h]
            t[0] += same
            t[1] += int(ref.max())
            t[2] = max(t[2], err)
            t[3] = max(t[3], abs(int(got.max()) - int(ref.max())))
            t[4] += np.array_equal(got, ref)
            row.append(f"halo {h}: {got.max()}/{ref.max()} objects, error {err:.4f}, identical {same}")
        print(f"{Path(f).name} (block {a.block}, tile {tile}): " + " | ".join(row), flush=True)
    for h, (same, n, err, dn, eq) in total.items():
        print(f"halo {h}: {same} of {n} objects identical, worst adapted Rand error {err:.4f}, "
              f"object count off by up to {dn}, label arrays equal on {eq} of {len(images)} images")


if __name__ == "__main__":
    main()
