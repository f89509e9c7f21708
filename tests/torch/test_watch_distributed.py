"""watch() under torch.distributed: two ranks on gloo, one of them spikes, then logs a NaN.

Each rank trains a DDP replica on its own batches and writes down, synchronously, what it saw;
rank 0's stored run must hold the combination of both ranks' values (mean of the losses, max of
the logit maxima), and both ranks must get the same events.
"""

import json
import math
import os
import socket
import sqlite3

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import foreshock  # noqa: E402

STEPS, SPIKE, NAN = 10, 6, 9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 32))
        model = torch.nn.parallel.DistributedDataParallel(net)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
        seen = {"loss": [], "logit_max": [], "lse_mean": []}
        with foreshock.watch(model, opt, run="ddp", store=os.path.join(tmp, "r.db"), flush_every=4,
                             console=False) as mon:
            for step in range(STEPS):
                x, y = torch.randn(8, 5, generator=g), torch.randint(0, 32, (8,), generator=g)
                if rank == 1 and step == SPIKE:
                    x = x * 100  # a loss spike on rank 1 only
                logits = model(x)
                loss = torch.nn.functional.cross_entropy(logits, y)
                loss.backward()
                opt.step()
                opt.zero_grad()
                seen["logit_max"].append(logits.max().item())
                seen["lse_mean"].append(torch.logsumexp(logits.double(), -1).mean().item())
                if rank == 1 and step == NAN:
                    loss = torch.tensor(float("nan"))  # a NaN loss on rank 1 only
                seen["loss"].append(loss.item())
                mon.step(step, loss=loss)
        seen["events"] = [(e.kind, e.metric, e.step) for e in mon.events]
        seen["run_id"] = mon.run_id
        with open(os.path.join(tmp, f"rank{rank}.json"), "w") as f:
            json.dump(seen, f)
    finally:
        # both ranks leave together: a rank that tears its group down while the other is still in
        # its last flush makes gloo's connection thread abort the process
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow  # two processes, each importing torch: about 12 s of CPU
def test_two_ranks_are_combined_in_one_store_and_both_see_the_events(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    run = foreshock.read(tmp_path / "r.db", run="ddp")
    loss = run["train/loss"].values
    assert run["train/loss"].steps.tolist() == list(range(STEPS))
    for step in range(STEPS):
        if step == NAN:
            assert math.isnan(loss[step])  # one rank's NaN is everyone's
            continue
        assert loss[step] == pytest.approx((ranks[0]["loss"][step] + ranks[1]["loss"][step]) / 2, rel=1e-6)
    assert loss[SPIKE] > 5 * loss[SPIKE - 1]  # rank 1's spike shows in the combined loss
    assert run["out/logit_max"].values.tolist() == pytest.approx(
        [max(a, b) for a, b in zip(ranks[0]["logit_max"], ranks[1]["logit_max"], strict=True)], rel=1e-6)
    assert run["out/lse_mean"].values.tolist() == pytest.approx(
        [(a + b) / 2 for a, b in zip(ranks[0]["lse_mean"], ranks[1]["lse_mean"], strict=True)], rel=1e-6)
    assert run["opt/lr"].values.tolist() == [0.05] * STEPS  # a host value (a Python float) goes through it too
    assert "layer/0/grad_norm" in run.names  # the replica's own layer names, not the DDP wrapper's
    # both ranks fired the same events, the NaN among them at its step; rank 0 alone wrote the run
    assert ranks[0]["events"] == ranks[1]["events"]
    assert ["nan", "train/loss", NAN] in ranks[0]["events"]
    assert ranks[1]["run_id"] is None
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
