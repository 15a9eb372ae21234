"""The cost of one DQN update on Atari frames: float32 vs bf16, eager and torch.compile.

One update is what ``train_phase`` does per minibatch with the atari preset: the target
network's forward on s', the Double DQN online forward on s', the online forward and
backward on s, gradient-norm clipping and a fused Adam step, for the dueling network of
the paper (6 actions, the 1/sqrt(2) rescaling). Random frames stand in for Pong (the
cost does not depend on the pixel values). For each batch size the variants run
interleaved in one process, several rounds, and the script prints the median time per
update and its ratio to float32 eager (the baseline).

    .venv/bin/python benchmarks/update_cost.py                     # batches 32 64 128 256
    .venv/bin/python benchmarks/update_cost.py --batches 32 --no-compile

Run it under the machine's own numerics (not the book's reference settings, which cap
oneDNN at AVX2 and so rule out AMX): bf16 is fast only where the CPU has AMX or
AVX512_BF16 (``duel_tutorial.learn.cpu_has_fast_bf16`` says whether this one has).
Compiling takes 20 s to minutes per variant, once, before timing.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

from duel_tutorial.config import preset
from duel_tutorial.learn import UpdateLoss, channels_last, cpu_has_fast_bf16
from duel_tutorial.model import DuelingQNetwork, scale_combined_gradient
from duel_tutorial.provenance import provenance, write_provenance
from duel_tutorial.replay import Batch


def random_batch(n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def frames() -> torch.Tensor:
        return torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8, generator=g)

    return Batch(frames(), torch.randint(0, 6, (n,), generator=g), torch.randn(n, generator=g),
                 frames(), torch.rand(n, generator=g) < 0.01, torch.zeros(n, dtype=torch.bool))


def make_update(precision: str, compile: bool, batch: Batch):
    """A closure doing one full update, and nothing shared with the other variants."""
    config, device = preset("atari"), torch.device("cpu")
    torch.manual_seed(0)
    online = DuelingQNetwork(n_actions=6)
    scale_combined_gradient(online, config.trunk_grad_scale)
    bf16 = precision == "bf16"
    if bf16:
        online = online.to(memory_format=torch.channels_last)
        batch = channels_last(batch)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps,
                                 fused=True)
    loss_fn = UpdateLoss(config, device, precision, compile=compile)
    params = list(online.parameters())

    def update() -> None:
        loss = loss_fn(online, target, batch, loss_fn.next_q_target(target, batch.next_obs))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()

    return update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10, help="timed updates per round")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results with provenance")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [("fp32", False), ("bf16", False)]
    if not args.no_compile:
        variants += [("fp32", True), ("bf16", True)]
    wall = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    print(f"torch {torch.__version__}, {args.threads} thread(s), bf16 hardware: "
          f"{cpu_has_fast_bf16()}; median ms per update over {args.rounds} interleaved rounds")
    print(f"{'batch':>5} " + " ".join(f"{p + (' compiled' if c else ''):>22}" for p, c in variants))
    for n in args.batches:
        batch = random_batch(n)
        updates = {}
        for precision, compile in variants:
            update = make_update(precision, compile, batch)
            start = time.perf_counter()
            for _ in range(3):  # warm-up (and compilation)
                update()
            if compile:
                print(f"  (batch {n}: compiled in {time.perf_counter() - start:.0f} s)")
            updates[precision, compile] = update
        times: dict = {key: [] for key in updates}
        for _ in range(args.rounds):
            for key, update in updates.items():
                start = time.perf_counter()
                for _ in range(args.updates):
                    update()
                times[key].append(1e3 * (time.perf_counter() - start) / args.updates)
        base = float(np.median(times["fp32", False]))
        cells = []
        for key in updates:
            ms = float(np.median(times[key]))
            cells.append(f"{ms:9.1f} ms ({base / ms:4.2f}x)")
            name = key[0] + (" compiled" if key[1] else "")
            results.setdefault(name, {})[str(n)] = round(ms, 2)
        print(f"{n:>5} " + " ".join(f"{c:>22}" for c in cells))
    if args.json:
        write_provenance(args.json, provenance(
            device="cpu", wall_time_s=time.perf_counter() - wall, torch_threads=args.threads,
            fast_bf16=cpu_has_fast_bf16(), rounds=args.rounds, updates=args.updates,
            load_average_1min=round(os.getloadavg()[0], 2), ms_per_update=results))


if __name__ == "__main__":
    main()
