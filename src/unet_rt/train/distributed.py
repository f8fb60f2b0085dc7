"""Data-parallel training: PyTorch DistributedDataParallel under ``torchrun``, gradient accumulation.

    torchrun --nproc_per_node 2 -m unet_rt.train.train --data DIR --out runs/x ...            # one machine
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 \\
             --nproc_per_node 4 -m unet_rt.train.train --data DIR --out runs/x ...            # several

One optimiser step consumes ``world_size * accumulate`` tiles. Tile ``j`` of step ``s`` (``j =
rank * accumulate + a``) is drawn from its own random stream ``[seed, s, j]``, so the tiles depend
only on (seed, step, j): a run on W processes equals, step for step, a run on one process with
``--accumulate W`` (same tiles, gradients averaged over them; fp32 rounding aside), and ``--resume``
is exact as before. A plain run (one process, no accumulation) keeps the stream ``[seed, s]`` of the
single-process trainer. The backend is gloo on CPU and nccl on GPU; rank 0 alone validates and
writes checkpoints, metrics and the model; every rank reads the checkpoint on ``--resume`` (the run
directory must be shared). BatchNorm layers normalise each tile with its own statistics on every
rank (no SyncBatchNorm, as with one tile per step); their running statistics are rank 0's
(DistributedDataParallel broadcasts buffers from rank 0).
"""
from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np
import torch


class Dist:
    """The process group of this run (a trivial one-process group when not under torchrun)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0
        self.device = torch.device("cpu")
        if self.world > 1:
            import torch.distributed as td

            if torch.cuda.is_available():
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not td.is_initialized():
                td.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    def wrap(self, net):
        """The module to run forward/backward through (DDP over ranks; the plain module alone)."""
        if self.world == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        net.to(self.device)
        return DistributedDataParallel(net, device_ids=[self.local_rank] if self.device.type == "cuda" else None)

    def mean(self, v: float) -> float:
        """The mean of a number over the ranks (the same result on every rank)."""
        if self.world == 1:
            return v
        import torch.distributed as td

        t = torch.tensor([v], dtype=torch.float64, device=self.device)
        td.all_reduce(t)
        return float(t.item()) / self.world

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def check_config(cfg: dict, dist: Dist, resume: bool) -> None:
    """Record (new run) or check (resume) the world size: the tiles of a step depend on it."""
    if resume and cfg.get("world_size", 1) != dist.world:
        raise SystemExit(f"--resume: the run was trained on {cfg.get('world_size', 1)} process(es), this is "
                         f"{dist.world}: the steps would draw other tiles (use --accumulate to keep "
                         f"world size x accumulate equal only in a new run)")
    cfg.setdefault("world_size", dist.world)
    cfg["accumulate"] = int(cfg.get("accumulate") or 1)
    if cfg["accumulate"] < 1:
        raise SystemExit("--accumulate must be >= 1")


def forward_backward(model, sampler, loss_fn, cfg: dict, step: int, dist: Dist) -> float:
    """One optimiser step's gradients: this rank's ``accumulate`` tiles. Returns the step's loss,
    the mean over all its tiles (identical on every rank)."""
    acc = cfg["accumulate"]
    n = dist.world * acc
    total = 0.0
    for a in range(acc):
        j = dist.rank * acc + a
        if n == 1:  # the single-process trainer's streams
            rng = np.random.default_rng([cfg["seed"], step])
            torch.manual_seed(cfg["seed"] * 1_000_003 + step)  # dropout
        else:
            rng = np.random.default_rng([cfg["seed"], step, j])
            torch.manual_seed((cfg["seed"] * 1_000_003 + step) * 4099 + j)
        x, y, w = sampler(rng)                                   # (C, I, I), (O, O), (O, O)
        # gradients are all-reduced only on the last micro-batch
        sync = nullcontext() if (a == acc - 1 or dist.world == 1) else model.no_sync()
        with sync:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
                logits = model(torch.from_numpy(x)[None].to(dist.device))  # (1, K, O, O)
            loss = loss_fn(logits, torch.from_numpy(y)[None].to(dist.device),
                           torch.from_numpy(w)[None].to(dist.device), cfg["loss"])
            (loss / acc if acc > 1 else loss).backward()
        total += loss.item()
    return dist.mean(total / acc)
