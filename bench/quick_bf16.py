# Run: python bench/quick_bf16.py [rounds]   (the README's bf16 quick-check table)
# Quick interleaved comparison on one 700 tile (the 512x512 workload's tile): ours fp32/bf16 executor vs
# OpenVINO f32/default on the same random-He paper net; parity vs PyTorch fp32 first. Wall and process CPU time.
import os
import sys
import tempfile
import time
import numpy as np
import torch
from unet_rt.train.model import UNet
from unet_rt.format import model_file
from unet_rt.export.onnx import export_onnx
from unet_rt import _kernels as K
import openvino as ov
PAPER = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
torch.manual_seed(0); torch.set_num_threads(2)
net = UNet(**PAPER).eval()
W = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
tile = 700
x = np.random.default_rng(1).standard_normal((1, tile, tile)).astype(np.float32)
with torch.inference_mode():
    ref = net(torch.from_numpy(x)[None])[0].numpy()
d = tempfile.mkdtemp()
p = os.path.join(d, "paper.plan")
model_file.save(p, model_file.ModelFile("weights", dict(PAPER), {"mean": [0.0], "std": [1.0]}, ["a", "b"], W, {}))
onnx = export_onnx(model_file.load(p), tile)
op = os.path.join(d, "u.onnx"); open(op, "wb").write(onnx.SerializeToString())
core = ov.Core(); m = core.read_model(op)
runners = {}
for prec in ("fp32", "bf16"):
    n = K.Network(PAPER, W, threads=2, precision=prec)
    runners[f"ours-{prec}"] = (lambda n=n: n.forward(x))
for tag, cfg in (("ov-f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("ov-default", {})):
    c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 2, **cfg})
    print(tag, c.get_property("INFERENCE_PRECISION_HINT"), flush=True)
    r = c.create_infer_request()
    runners[tag] = (lambda r=r, c=c: np.array(r.infer({0: x[None]})[c.output(0)][0], copy=True))
scale = np.abs(ref).max()
for k, f in runners.items():
    y = f()
    print(k, "max rel err vs torch %.2e" % (np.abs(y - ref).max() / scale), "label agreement %.4f" % (y.argmax(0) == ref.argmax(0)).mean(), flush=True)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
T = {k: [] for k in runners}; C = {k: [] for k in runners}
names = list(runners)
for r in range(rounds):
    for k in names[r % 4:] + names[:r % 4]:
        t, c = time.perf_counter(), time.process_time(); runners[k](); T[k].append(time.perf_counter() - t); C[k].append(time.process_time() - c)
print("CPU:", open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "), "load", os.getloadavg())
for k in names:
    print(f"{k:12s} wall median {np.median(T[k]):.2f} s  cpu median {np.median(C[k]):.2f} s  wall/ours-fp32 {np.median(T[k])/np.median(T['ours-fp32']):.2f}  wall/ours-bf16 {np.median(T[k])/np.median(T['ours-bf16']):.2f}  cpu/ours-bf16 {np.median(C[k])/np.median(C['ours-bf16']):.2f}", flush=True)
