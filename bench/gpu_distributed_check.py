"""Distributed training on GPUs (nccl, one GPU per process) for every method, the memory on the device.

With CUDA, ``min(2, GPUs)`` processes (one GPU each; 1 process on a one-GPU machine)
are started by clreplay's launcher (torch's elastic agent, spawned) after the parent
process has itself trained on the GPU (the case fork-based launchers break on). For
every method of the registry, as ``clreplay run --method`` builds it, and ER's online
replay, each rank trains an MLP (``DistributedDataParallel``) on a synthetic stream
whose datasets live on the GPU, so the memory store and every batch stay there. It
checks, and prints PASS or FAIL for each:

1. the backend is nccl, and the collectives clreplay uses (all_gather, all_reduce) run
   over it, called directly even with one process;
2. per method: the memory is stored on the GPU; after every experience its checksums
   (computed on the GPU) are the same on every rank and equal to those of the same
   memory copied to the CPU; the accuracies every rank computes are equal; the
   weights after the first experience match those of one process (no process group)
   taking the same global batches, to float tolerance;
3. ``clreplay run --device cuda --nproc N`` end to end: ``results.json`` gives the world size
   (not with ``--quick``).

Takes about a minute. Without CUDA it says so and runs the same on the CPU with gloo
and 2 processes, only to check that the script works (the tests run that).

    python bench/gpu_distributed_check.py [--quick] [--out results.json]
"""

from __future__ import annotations

import json
import os
import tempfile

import _harness as h
import torch
import torch.distributed as dist

from clreplay import distributed as idist
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.launch import launch
from clreplay.models import make_mlp
from clreplay.replay.storage.consistency import memory_checksums
from clreplay.run import RunConfig, launch_experiment
from clreplay.strategies import get_method, list_methods
from clreplay.training import Naive

N_FEATURES, N_CLASSES, MEM, BATCH = 64, 10, 200, 64
#: Every registered method, and ER's online replay.
CASES = [*list_methods(), "online-er"]
#: Small settings for the slow ones (GDumb's passes over the memory).
OPTIONS = {"passes": 4}


def plugins_of(case: str, model):
    """The plugins of ``case`` as the command line builds them."""
    name = "er" if case == "online-er" else case
    method = get_method(name)
    takes = {option.name for option in method.options}
    config = RunConfig(method=name, mem_size=MEM, batch_size=BATCH, online=case == "online-er",
                       batch_size_mem=BATCH // 2 if "batch_size_mem" in method.replay_options else None,
                       method_options={k: v for k, v in OPTIONS.items() if k in takes}).validate()
    return method.build(config, model)


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


def cpu_checksums(policy) -> torch.Tensor:
    """The checksums of a CPU copy of ``policy``'s memory (its contents)."""
    copy = type(policy)({}, policy.mem_size)
    for name, spec in policy.store.extras.items():
        copy.store.register_column(name, spec.shape, spec.dtype)
    state = _to_cpu(policy.state_dict())
    state["extra"] = copy._extra_state()  # the policy's own bookkeeping: not checksummed
    copy.load_state_dict(state)
    return _content(memory_checksums(copy)[1])


def train(case: str, device: str, distributed: bool, size: tuple) -> dict:
    """Train ``case`` on the stream; per experience: where the memory lives, its checksums
    on the device and of a CPU copy; the final accuracies; the weights after experience 0."""
    n_samples, hidden = size
    train_data, test_data = make_synthetic(n_samples, N_FEATURES, N_CLASSES, seed=0)
    bench = class_incremental(train_data.to(device), test_data.to(device), 5, seed=0)
    model = make_mlp(N_FEATURES, N_CLASSES, [hidden], seed=0)
    plugins = plugins_of(case, model)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=BATCH, train_epochs=2, eval_mb_size=256, device=device,
                     plugins=plugins, seed=0, distributed=distributed)
    per_experience, weights = [], None
    for experience in bench.train_stream:
        strategy.train(experience)
        if weights is None:
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        policy = plugins[0].storage_policy
        _, sums = memory_checksums(policy)
        per_experience.append({"store_device": str(policy.store.device), "checksums": sums.cpu(),
                               "cpu_checksums": cpu_checksums(policy)})
    return {"per_experience": per_experience, "accuracies": strategy.eval(bench.test_stream),
            "weights": weights}


def _worker(device_type: str, size: tuple) -> dict:
    rank, world = idist.get_rank(), idist.get_world_size()
    device = f"cuda:{idist.get_local_rank()}" if device_type == "cuda" else "cpu"
    out = {"rank": rank, "world": world, "backend": idist.get_backend(), "runs": {}}
    for case in CASES:
        run = train(case, device, True, size)
        for record in run["per_experience"]:  # every rank's checksums, through the backend
            record["all_ranks"] = idist.all_gather(record["checksums"].to(device).unsqueeze(0)).cpu()
        out["runs"][case] = run
    # The collectives themselves, even in a group of one (the helpers skip a group of one).
    probe = torch.arange(6, dtype=torch.float32, device=device) + rank
    parts = [torch.empty_like(probe) for _ in range(world)]
    dist.all_gather(parts, probe)
    summed = probe.clone()
    dist.all_reduce(summed)
    out["probe"] = {"gathered": torch.cat(parts).cpu(), "summed": summed.cpu()}
    return out


def verdicts(ranks: list, singles: dict, device_type: str) -> list:
    """(name, passed, detail) of every check, from the ranks' records and the one-process runs."""
    nproc = len(ranks)
    out = [("backend", ranks[0]["backend"] == ("nccl" if device_type == "cuda" else "gloo"),
            str(ranks[0]["backend"]))]
    expected = torch.cat([torch.arange(6, dtype=torch.float32) + r for r in range(nproc)])
    probe = ranks[0]["probe"]
    out.append(("all_gather and all_reduce over the backend",
                torch.equal(probe["gathered"], expected)
                and torch.equal(probe["summed"], sum(torch.arange(6, dtype=torch.float32) + r
                                                     for r in range(nproc))), ""))
    for case in CASES:
        runs = [r["runs"][case] for r in ranks]
        experiences = runs[0]["per_experience"]
        out.append((f"{case}: memory stored on {device_type}",
                    all(e["store_device"].startswith(device_type) for e in experiences),
                    experiences[-1]["store_device"]))
        out.append((f"{case}: memory checksums equal on every rank after every experience",
                    all(bool((e["all_ranks"] == e["all_ranks"][0]).all()) for e in experiences),
                    f"{len(experiences)} experiences, {nproc} rank(s)"))
        out.append((f"{case}: checksums on {device_type} equal those of a CPU copy",
                    all(torch.equal(_content(e["checksums"]), e["cpu_checksums"]) for e in experiences), ""))
        out.append((f"{case}: accuracies equal on every rank",
                    all(r["accuracies"] == runs[0]["accuracies"] for r in runs),
                    f"mean {sum(runs[0]['accuracies'].values()) / 5:.4f}"))
        single = singles[case]
        diff = max(float((runs[0]["weights"][k] - v).abs().max()) for k, v in single["weights"].items())
        out.append((f"{case}: weights after experience 0 match one process on the same global batches",
                    diff < 1e-4, f"max abs difference {diff:.2e}; accuracy "
                    f"{sum(single['accuracies'].values()) / 5:.4f} in one process"))
    return out


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
    device0 = "cuda:0" if device_type == "cuda" else "cpu"
    # One process first, in this process: the launch below starts after it trained here.
    singles = {case: train(case, device0, False, size) for case in CASES}
    ranks = launch(_worker, nproc, device_type, size, device=device_type, threads=1)
    checks = []
    for name, ok, detail in verdicts(ranks, singles, device_type):
        checks.append({"check": name, "passed": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    if args.quick:  # the command line's own tests launch it on the CPU
        print("(--quick: clreplay run --nproc not started)")
    else:
        with tempfile.TemporaryDirectory() as folder:
            config = RunConfig(n_experiences=2, epochs=1, hidden=[32], batch_size=BATCH, device=device_type,
                               output=os.path.join(folder, "run"))
            launch_experiment(config, nproc)
            with open(os.path.join(folder, "run", "results.json")) as f:
                world = json.load(f)["config"]["world_size"]
        name = f"clreplay run --device {device_type} --nproc {nproc}: results.json gives the world size"
        checks.append({"check": name, "passed": world == nproc, "detail": f"world_size {world}"})
        print(f"{'PASS' if world == nproc else 'FAIL'}  {name}: world_size {world}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device_type, "processes": nproc, "machine": h.machine(),
                       "checks": checks}, f, indent=1)
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
