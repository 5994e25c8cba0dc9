"""Distributed replay on GPUs (nccl), with the datasets and the memory on the device.

With CUDA, ``min(2, GPUs)`` processes (one GPU each; 1 process on a one-GPU machine)
train an MLP with ``ReplayPlugin`` + class-balanced memory with herding selection, then
with ``OnlineReplayPlugin`` storing the logits of the stream (a DER-like extra column),
on a synthetic stream whose datasets live on the GPU, so the memory store and every
batch stay there. It checks, and prints PASS or FAIL for each:

1. the memory is stored on the GPU;
2. after every experience the memory checksums (computed on the GPU) are the same
   on every rank (gathered over nccl) and equal to those of the same memory copied
   to the CPU (the checksums are exact integer sums in float64 on any device);
3. the collectives used by clreplay (all_gather of bytes, all_reduce) run over nccl,
   called directly even with one process;
4. the accuracies every rank computes are equal, and the weights after the first
   experience match those of one process (no process group) taking the same global
   batches, to float tolerance (equal by construction with one process).

Takes well under a minute. Without CUDA it says so and runs the same on the CPU
with gloo and 2 processes, only to check that the script works.

    python bench/gpu_distributed_check.py [--out results.json]
"""

from __future__ import annotations

import json
import os
import tempfile

import _harness as h
import torch
import torch.distributed as dist

from clreplay import (
    ClassBalancedStoragePolicy,
    HerdingSelectionStrategy,
    OnlineReplayPlugin,
    ReplayPlugin,
)
from clreplay import distributed as idist
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.models import feature_layer_name, make_mlp
from clreplay.replay.storage.consistency import memory_checksums
from clreplay.training import Naive

N_FEATURES, N_CLASSES, MEM = 64, 10, 200


class LogitsReplay(OnlineReplayPlugin):
    """Online replay that stores the stream samples' logits with them."""

    def setup(self, context):
        super().setup(context)
        self.storage_policy.store.register_column("logits", (N_CLASSES,), torch.float32)

    def stream_extras(self, strategy, n):
        return {"logits": strategy.mb_output[:n].detach()}


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _content(sums: torch.Tensor) -> torch.Tensor:
    """The checksums of the memory's contents: without row 1, the digest of its writes."""
    return torch.cat([sums[:1], sums[2:]])


def _cpu_checksums(policy) -> torch.Tensor:
    """The checksums of a CPU copy of ``policy``'s memory (its contents)."""
    copy = ClassBalancedStoragePolicy({}, policy.mem_size) if isinstance(
        policy, ClassBalancedStoragePolicy) else type(policy)({}, policy.mem_size)
    for name, spec in policy.store.extras.items():
        copy.store.register_column(name, spec.shape, spec.dtype)
    state = _to_cpu(policy.state_dict())
    state["extra"] = copy._extra_state()  # the selection strategy differs; not checksummed
    copy.load_state_dict(state)
    return _content(memory_checksums(copy)[1])


def _run(kind: str, device: str, global_batch: int, distributed: bool, size: tuple):
    """Train on the stream; per experience: where the memory lives, its checksums on the
    device and on the CPU. Returns them, the final accuracies and the weights after the
    first experience (later ones also depend on selections made from features)."""
    n_samples, hidden = size
    train, test = make_synthetic(n_samples, N_FEATURES, N_CLASSES, seed=0)
    bench = class_incremental(train.to(device), test.to(device), 5, seed=0)
    model = make_mlp(N_FEATURES, N_CLASSES, [hidden], seed=0)
    if kind == "offline":
        policy = ClassBalancedStoragePolicy(
            {}, MEM, selection_strategy=HerdingSelectionStrategy(model, feature_layer_name(model)))
        plugin = ReplayPlugin(MEM, policy)
    else:
        plugin = LogitsReplay(MEM, batch_size_mem=global_batch // 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=global_batch, train_epochs=2, eval_mb_size=256, device=device,
                     plugins=[plugin], seed=0, distributed=distributed)
    per_experience, weights = [], None
    for experience in bench.train_stream:
        strategy.train(experience)
        if weights is None:
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        policy = plugin.storage_policy
        _, sums = memory_checksums(policy)
        per_experience.append({"store_device": str(policy.store.device), "checksums": sums,
                               "cpu_checksums": _cpu_checksums(policy)})
    return per_experience, strategy.eval(bench.test_stream), weights


def _worker(device_type: str, folder: str, size: tuple) -> None:
    rank, world = idist.get_rank(), idist.get_world_size()
    device = f"cuda:{idist.get_local_rank()}" if device_type == "cuda" else "cpu"
    out = {"rank": rank, "world": world, "backend": idist.get_backend(), "runs": {}}
    for kind in ("offline", "online"):
        per_experience, accuracies, weights = _run(kind, device, 64, True, size)
        for record in per_experience:  # every rank's checksums, through the backend
            record["all_ranks"] = idist.all_gather(record["checksums"].to(device).unsqueeze(0)).cpu()
        out["runs"][kind] = {"per_experience": per_experience, "accuracies": accuracies,
                             "weights": weights}
    # The collectives themselves, even in a group of one (the helpers skip a group of one).
    probe = torch.arange(6, dtype=torch.float32, device=device) + rank
    parts = [torch.empty_like(probe) for _ in range(world)]
    dist.all_gather(parts, probe)
    summed = probe.clone()
    dist.all_reduce(summed)
    out["probe"] = {"gathered": torch.cat(parts).cpu(), "summed": summed.cpu()}
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))


def main(argv=None) -> int:
    args = h.parse_args(__doc__.splitlines()[0], argv,
                        out={"default": None, "help": "also write the results to this JSON file"})
    if torch.cuda.is_available():
        device_type, nproc = "cuda", min(2, torch.cuda.device_count())
        print(f"gpu_distributed_check: {torch.cuda.get_device_name(0)} x "
              f"{torch.cuda.device_count()}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
              f"{nproc} process(es), nccl")
    else:
        device_type, nproc = "cpu", 2
        print(f"gpu_distributed_check: CUDA is not available here (torch {torch.__version__}); "
              "nothing was checked on a GPU. Running the same checks on the CPU with gloo and "
              "2 processes, only to check that the script works.")
    size = (300, 32) if args.quick else (3000, 256)  # samples, hidden units
    print(f"machine: {h.machine()}")
    checks = []

    def check(name, ok, detail=""):
        checks.append({"check": name, "passed": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        idist.launch(_worker, nproc, device_type, folder, size, device=device_type, threads=1,
                     start_method="spawn" if device_type == "cuda" else "fork")
        ranks = [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False)
                 for r in range(nproc)]
    device0 = "cuda:0" if device_type == "cuda" else "cpu"
    check("backend", ranks[0]["backend"] == ("nccl" if device_type == "cuda" else "gloo"),
          str(ranks[0]["backend"]))
    expected = torch.cat([torch.arange(6, dtype=torch.float32) + r for r in range(nproc)])
    probe = ranks[0]["probe"]
    check("all_gather and all_reduce over the backend",
          torch.equal(probe["gathered"], expected)
          and torch.equal(probe["summed"], sum(torch.arange(6, dtype=torch.float32) + r
                                               for r in range(nproc))))
    for kind in ("offline", "online"):
        runs = [r["runs"][kind] for r in ranks]
        experiences = runs[0]["per_experience"]
        on_device = all(e["store_device"].startswith(device_type) for e in experiences)
        check(f"{kind}: memory stored on {device_type}", on_device, experiences[-1]["store_device"])
        same_ranks = all(bool((e["all_ranks"] == e["all_ranks"][0]).all()) for e in experiences)
        check(f"{kind}: memory checksums equal on every rank after every experience", same_ranks,
              f"{len(experiences)} experiences, {nproc} rank(s)")
        device_cpu = all(torch.equal(_content(e["checksums"]), e["cpu_checksums"]) for e in experiences)
        check(f"{kind}: checksums on {device_type} equal those of a CPU copy", device_cpu)
        check(f"{kind}: accuracies equal on every rank",
              all(r["accuracies"] == runs[0]["accuracies"] for r in runs),
              f"mean {sum(runs[0]['accuracies'].values()) / 5:.4f}")
        _, single_acc, single_weights = _run(kind, device0, 64, False, size)
        diff = max(float((runs[0]["weights"][k] - v).abs().max()) for k, v in single_weights.items())
        check(f"{kind}: weights after experience 0 match one process on the same global batches",
              diff < 1e-4,
              f"max abs difference {diff:.2e}; accuracy {sum(single_acc.values()) / 5:.4f} "
              "in one process")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device_type, "processes": nproc, "machine": h.machine(),
                       "checks": checks}, f, indent=1)
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
