"""Data-parallel training: 2 processes under torchrun (gloo on CPU) equal one process accumulating
the same tiles' gradients over 2, and a killed distributed run resumes."""
import csv
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from test_train import ARGS, tiny_data  # noqa: E402,F401  (the trainer tests' data and small-net options)

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "unet_rt.train.train", *map(str, argv)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _weights(run):
    from safetensors.numpy import load_file

    t = load_file(str(run / "checkpoint.safetensors"))
    return {k: v for k, v in t.items() if k.startswith("model.") and "running_" not in k and "num_batches" not in k}


def test_two_processes_equal_accumulation_over_two(tiny_data, tmp_path):  # noqa: F811
    from unet_rt.train import train

    one, two = tmp_path / "one", tmp_path / "two"
    base = ["--data", tiny_data, *ARGS]
    assert train.main([*map(str, base), "--out", str(one), "--steps", str(STEPS), "--accumulate", "2"]) == 0
    # the distributed run is killed after 2 steps (checkpoint) and resumed: rank 0 wrote one checkpoint
    _torchrun(*base, "--out", two, "--steps", STEPS, "--stop-at", 2)
    r = _torchrun("--out", two, "--resume", "--no-progress", "--threads", 1)
    assert "resumed" in r.stdout
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and len(a) > 10
    worst = max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)) for k in a)
    assert worst < 1e-4, worst
    # the weights moved: the comparison is not between two initialisations
    assert any(not np.allclose(a[k], _weights_init(tiny_data, tmp_path)[k]) for k in a)
    rows = [int(r["step"]) for r in csv.DictReader(open(two / "metrics.csv")) if r["loss"]]
    assert rows == list(range(1, STEPS + 1))  # one writer, no duplicated rows
    l1 = [float(r["loss"]) for r in csv.DictReader(open(one / "metrics.csv")) if r["loss"]]
    l2 = [float(r["loss"]) for r in csv.DictReader(open(two / "metrics.csv")) if r["loss"]]
    np.testing.assert_allclose(l1, l2, rtol=1e-4)


def _weights_init(data, tmp_path):
    from unet_rt.train import train

    out = tmp_path / "init"
    if not (out / "checkpoint.safetensors").exists():
        assert train.main([*map(str, ["--data", data, *ARGS]), "--out", str(out), "--steps", "1", "--lr", "0",
                           "--ckpt-every", "1"]) == 0
    return _weights(out)
