"""watch() on sharded models: two ranks on gloo, FSDP2 (``fully_shard``) and FSDP1 (with and without
``use_orig_params``).

Each rank holds a shard of every parameter, so its own norms are partial. The stored gradient norms
and update ratios, global and per layer, must equal the norms of the whole model: each rank keeps an
unsharded copy of the model, gives it the gradient FSDP averages (the mean of the ranks' gradients,
all-reduced by hand) and the same SGD step, and takes the norms from its full tensors.
"""

import json
import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import foreshock  # noqa: E402
from foreshock.torch.capture import layer_name  # noqa: E402

STEPS = 5
KINDS = ("fsdp2", "fsdp1", "fsdp1-flat")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights on both ranks, and in the reference copy
    # 7 and 3 rows on 2 ranks: shards of different sizes
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 7),
                               torch.nn.ReLU(), torch.nn.Linear(7, 3))


def _shard(net: torch.nn.Module, kind: str) -> torch.nn.Module:
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in (net[0], net[2], net[4]):
            fully_shard(layer)
        return fully_shard(net)
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    cpu = torch.device("cpu")  # without it FSDP1 asks for an accelerator
    use_orig = kind == "fsdp1"
    net[0] = checkpoint_wrapper(net[0])  # a second wrapper whose prefix names no layer
    net[2] = FSDP(net[2], use_orig_params=use_orig, device_id=cpu)  # nested: its own flat parameter
    return FSDP(net, use_orig_params=use_orig, device_id=cpu)


def _norms(tensors: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    layers: dict[str, float] = {}
    for name, t in tensors.items():
        layers[layer_name(name)] = layers.get(layer_name(name), 0.0) + t.double().square().sum().item()
    return sum(layers.values()) ** 0.5, {k: v ** 0.5 for k, v in layers.items()}


def worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for kind in KINDS:
            ref = _net()
            model = _shard(_net(), kind)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
            g = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
            seen = {"grad_norm": [], "update_ratio": [], "layer_grad_norm": [], "layer_update_ratio": []}
            with foreshock.watch(model, opt, run=kind, store=os.path.join(tmp, "r.db"), flush_every=2,
                                 console=False, precursors=None) as mon:
                for step in range(STEPS):
                    x, y = torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
                    opt.zero_grad()
                    # the reference: the whole model, the gradient averaged over the ranks
                    loss = torch.nn.functional.cross_entropy(ref(x), y)
                    loss.backward()
                    for p in ref.parameters():
                        dist.all_reduce(p.grad)
                        p.grad /= world
                    grads = {n: p.grad.clone() for n, p in ref.named_parameters()}
                    before = {n: p.detach().clone() for n, p in ref.named_parameters()}
                    ref_opt.step()
                    ref_opt.zero_grad()
                    update = {n: before[n] - p.detach() for n, p in ref.named_parameters()}
                    g_norm, g_layers = _norms(grads)
                    (d_norm, d_layers), (w_norm, w_layers) = _norms(update), _norms(before)
                    seen["grad_norm"].append(g_norm)
                    seen["update_ratio"].append(d_norm / w_norm)
                    seen["layer_grad_norm"].append(g_layers)
                    seen["layer_update_ratio"].append({k: d_layers[k] / w_layers[k] for k in d_layers})
                    mon.step(step, loss=loss)
            with open(os.path.join(tmp, f"{kind}-rank{rank}.json"), "w") as f:
                json.dump(seen, f)
    finally:
        dist.barrier()  # both ranks leave together (see test_watch_distributed.py)
        dist.destroy_process_group()


@pytest.mark.slow  # two processes, each importing torch and FSDP: about 15 s of CPU
def test_sharded_norms_are_the_norms_of_the_whole_model(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for kind in KINDS:
        ref = json.loads((tmp_path / f"{kind}-rank0.json").read_text())
        assert ref == json.loads((tmp_path / f"{kind}-rank1.json").read_text())
        run = foreshock.read(tmp_path / "r.db", run=kind)
        # the user's layers, not the wrappers' names, and no squared-norm column reaches the store
        assert sorted(n for n in run.names if n.startswith("layer/")) == sorted(
            f"layer/{layer}/{m}" for layer in ("0", "2", "4") for m in ("grad_norm", "update_ratio"))
        assert not [n for n in run.names if ":" in n]
        assert run["opt/grad_norm"].steps.tolist() == list(range(STEPS))
        assert run["opt/grad_norm"].values.tolist() == pytest.approx(ref["grad_norm"], rel=1e-5), kind
        assert run["opt/update_ratio"].values.tolist() == pytest.approx(ref["update_ratio"], rel=1e-5), kind
        for layer in ("0", "2", "4"):
            assert run[f"layer/{layer}/grad_norm"].values.tolist() == pytest.approx(
                [r[layer] for r in ref["layer_grad_norm"]], rel=1e-5), (kind, layer)
            assert run[f"layer/{layer}/update_ratio"].values.tolist() == pytest.approx(
                [r[layer] for r in ref["layer_update_ratio"]], rel=1e-5), (kind, layer)
