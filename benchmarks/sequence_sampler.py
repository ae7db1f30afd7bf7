"""Training targets per second with random clips and with runs of consecutive frames, side by side.

Both formulations train the same model (same initial weights) with ``FLANetModule._losses`` (what
``flanet train`` runs per batch: forward, eq. 2, backward, the recipe's gradient clipping, Adam) on
batches of the same synthetic set (``flanet.data.synth``, the demo's generator):

- ``clips``: ``--clips B`` random clips, one target each (the paper's formulation);
- ``runs``: ``--runs K`` runs of ``--length L`` consecutive frames (``data.sequence_length=L``).

Batch memory is the bytes of the tensors autograd saves for the backward pass of one step (unique
storages, the activations a step holds), reported for both; choose ``K`` and ``L`` so that the runs'
figure does not exceed the clips'. Rounds interleave the two (order alternating), each timing
``--steps`` steps of each; a round's ratio is runs' targets/s over clips' targets/s, so machine
load shared by both cancels to first order. Data loading (``__getitem__`` + collate, ``num_workers=0``)
is timed apart from the step, and both targets/s are given with and without it.

    python benchmarks/sequence_sampler.py --recipe demo --clips 4 --runs 1 --length 10 --rounds 3 --steps 4

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from flanet.data import ClipDataset, discover
from flanet.data.sequences import SequenceDataset
from flanet.data.synth import generate_dataset
from flanet.training.config import load_config
from flanet.training.module import FLANetModule, _target_count


def saved_bytes(module: FLANetModule, batch: dict) -> int:
    """Bytes of the unique storages autograd saves for backward in one forward + loss."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module._losses(batch).total.backward()
    module.model.zero_grad(set_to_none=True)
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--override", action="append", default=[], help="extra dotted.key=value")
    parser.add_argument("--data", type=Path, help="data root (default: a synthetic set like the demo's)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    root = args.data or generate_dataset(Path(tempfile.mkdtemp()) / "synth", videos=30, frames=30, size=128, seed=0)
    base = [f"data.root={root}", *args.override]
    configs = {"clips": load_config(args.recipe, [*base, f"data.batch_size={args.clips}"]),
               "runs": load_config(args.recipe, [*base, f"data.batch_size={args.runs}",
                                                 f"data.sequence_length={args.length}"])}
    video_set = discover(root)
    modules, loaders, optimizers, memory = {}, {}, {}, {}
    for name, config in configs.items():
        torch.manual_seed(0)
        module = modules[name] = FLANetModule(config)
        module.model.train()
        data = config.data
        common = dict(image_size=data.image_size, clip_len=module.model.num_frames,
                      with_previous=module.use_previous, box_targets=bool(module.model.has_heatmap))
        dataset = (ClipDataset(video_set, "train", **common) if name == "clips"
                   else SequenceDataset(video_set, "train", run_length=args.length, **common))
        loaders[name] = iter(DataLoader(dataset, batch_size=data.batch_size, shuffle=True, drop_last=True,
                                        generator=torch.Generator().manual_seed(0)))
        optimizers[name] = torch.optim.Adam(module.model.parameters(), lr=config.optim.lr)
        memory[name] = saved_bytes(module, next(loaders[name]))

    def step(name: str) -> tuple[int, float, float]:
        begin = time.perf_counter()
        batch = next(loaders[name])
        loaded = time.perf_counter()
        terms = modules[name]._losses(batch)
        optimizers[name].zero_grad(set_to_none=True)
        terms.total.backward()
        clip = configs[name].trainer.gradient_clip_val
        if clip:
            torch.nn.utils.clip_grad_norm_(modules[name].model.parameters(), clip)
        optimizers[name].step()
        return _target_count(batch), loaded - begin, time.perf_counter() - loaded

    for name in modules:  # warm-up
        step(name)
    rounds = []
    for index in range(args.rounds):
        row = {}
        for name in (("clips", "runs") if index % 2 == 0 else ("runs", "clips")):
            results = [step(name) for _ in range(args.steps)]
            targets = sum(r[0] for r in results)
            load_s, step_s = sum(r[1] for r in results), sum(r[2] for r in results)
            row[name] = {"targets": targets, "load_s": load_s, "step_s": step_s,
                         "targets_per_s_step": targets / step_s, "targets_per_s": targets / (load_s + step_s)}
        row["ratio_step"] = row["runs"]["targets_per_s_step"] / row["clips"]["targets_per_s_step"]
        row["ratio"] = row["runs"]["targets_per_s"] / row["clips"]["targets_per_s"]
        rounds.append(row)
    print(json.dumps({
        "settings": vars(args) | {"data": str(root)}, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "load_before_after": [load_before, os.getloadavg()],
        "saved_activation_bytes": memory, "rounds": rounds,
        "median_ratio_step": statistics.median(r["ratio_step"] for r in rounds),
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
    }, indent=1, default=str))


if __name__ == "__main__":
    main()
