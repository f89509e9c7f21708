"""Train a lab workload's cpu preset through foreshock.watch and print what the bench file reports.

    OMP_NUM_THREADS=1 python bench/lab_grokking_eos.py grokking '{"seed": 1}'
    PRESET=cpu-mlp OMP_NUM_THREADS=1 python bench/lab_grokking_eos.py grokking
    OMP_NUM_THREADS=1 python bench/lab_grokking_eos.py edge-of-stability '{"lr": 0.05}'

Results: bench/results/lab_grokking_eos_cpu.md.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

import foreshock
from foreshock.lab.base import get
from foreshock.store import open_store

name, overrides = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
torch.set_num_threads(1)
workload = get(name)
preset = os.environ.get("PRESET", "cpu")
config = workload.config(preset, overrides)
db = os.path.join(tempfile.mkdtemp(), "lab.db")
t0, c0 = time.perf_counter(), time.process_time()
mon = None
def watch(model, optimizer):
    global mon
    mon = foreshock.watch(model, optimizer, run=name, store=db, console=False)
    return mon
workload.train(config, watch)
mon.close()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
with open_store(db) as store:
    run = store.load_run(name)
print(f"{name} {preset} {json.dumps(overrides)}: {config['steps']} steps, CPU {cpu:.1f} s, wall {wall:.1f} s, "
      f"torch {torch.__version__}, events {len(mon.events)}")
def first(metric, pred):
    s, v = run.series(metric)
    hit = np.flatnonzero(pred(v))
    return (int(s[hit[0]]) if len(hit) else None), s, v
if name == "grokking":
    tr, _, _ = first("train/acc", lambda v: v >= 0.99)
    va, s, v = first("val/acc", lambda v: v >= 0.9)
    _, ws, wn = first("weight/norm", lambda v: v > 0)
    print(f"train/acc >= 0.99 first at step {tr}; val/acc >= 0.90 first at step {va}; final val/acc {v[-1]:.3f}")
    for q in (0, tr, (tr + va) // 2 if va else None, va, int(s[-1])):
        if q is not None:
            i = np.searchsorted(s, q)
            print(f"  step {int(s[i])}: val/acc {v[i]:.3f} weight/norm {wn[np.searchsorted(ws, q)]:.1f}")
else:
    lr = config["lr"]
    hit, s, lam = first("probe/hessian/lambda_max", lambda v: v * lr / 2 >= 0.9)
    r = lam * lr / 2
    after = r[s >= hit] if hit is not None else r[:0]
    print(f"2/lr = {2 / lr:g}; lambda_max at step 0: {lam[0]:.2f}; lambda_max*lr/2 >= 0.9 first at step {hit}")
    if len(after):
        print(f"after it ({len(after)} probes): ratio median {np.median(after):.3f}, "
              f"5-95% [{np.quantile(after, 0.05):.3f}, {np.quantile(after, 0.95):.3f}], max {after.max():.3f}")
    print(f"max lambda_max*lr/2 over the run: {r.max():.3f} (lambda_max {lam.max():.2f} at step {int(s[np.argmax(lam)])})")
    ls, lv = run.series("train/loss")
    hit = hit if hit is not None else int(ls[-1])
    print(f"train/loss: step 0 {lv[0]:.4f}, at the hit {lv[np.searchsorted(ls, hit)]:.4f}, final {lv[-1]:.4f}; "
          f"steps after the hit where the loss rose: {int(np.sum(np.diff(lv[ls >= hit]) > 0))}")
for e in mon.events:
    print(f"  event {e.detector}/{e.kind} {e.severity} at step {e.step}: {e.message}")
