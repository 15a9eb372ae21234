"""CartPole-v1, dueling against single-stream: the default preset over ten seeds.

    python scripts/numerics.py reference -- nice python experiments/cartpole.py   # cartpole_*
    python scripts/numerics.py reference -- nice python experiments/cartpole.py \
        --seeds 5 --loss huber --name cartpole_huber
    nice python experiments/cartpole.py --seeds 3 --no-anneal-lr --out /tmp/c

The first two made the committed results in ``experiments/cartpole/`` that
``book/08_cartpole.ipynb`` loads, under the book's reference numerics
(``duel_tutorial.numerics``), so that any x86-64 CPU reproduces them run for run (18 and
10 minutes on a 2-core AMD EPYC; each JSON records its own wall time, processor and
numerics). Chapter 8 compares them with two earlier recordings of the main experiment:
``cartpole_unpinned_*``, made before the numerics were pinned, and ``cartpole_mkl_avx2_*``,
made under the first reference numerics, whose MKL branch (AVX2) MKL runs on Intel CPUs
only.

For seeds 0 .. SEEDS-1 and both networks ("dueling": ``MLPDuelingQNetwork``; "single":
the parameter-matched ``MLPQNetwork``), trains ``preset("cartpole", seed=s, network=n)``
with :func:`duel_tutorial.train.train`, exactly what ``python -m duel_tutorial.train
--seed s --network n`` trains (in memory here: no checkpoints), then plays the final
network greedily for ``--greedy-episodes`` episodes from the evaluation seed that
``python -m duel_tutorial.evaluate`` uses (training seed + 1000). Jobs run in a pool of
``--workers`` processes, one torch thread each. Other ``DQNConfig`` fields can be changed
with their training flags (``--loss huber``, ``--total-steps 20000``, ...).

Writes, in ``--out`` (default ``experiments/cartpole/``):

- ``<name>_episodes.csv``: network, seed, step, return: every finished training episode;
- ``<name>_eval.csv``: network, seed, train_wall_s, steps, eval_mean, eval_std, eval_min:
  one row per run, ``train_wall_s`` being the wall time of the whole ``train`` call;
- ``<name>.json``: provenance (command, commit, device, wall time, versions, config).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from duel_tutorial.config import DQNConfig, add_config_arguments, config_overrides, preset
from duel_tutorial.device import resolve_device
from duel_tutorial.evaluate import EVAL_SEED_OFFSET, evaluate
from duel_tutorial.provenance import provenance, write_provenance
from duel_tutorial.train import train

OUT = Path(__file__).resolve().parent / "cartpole"
NETWORKS = ("dueling", "single")
EPISODE_COLUMNS = ("network", "seed", "step", "return")
EVAL_COLUMNS = ("network", "seed", "train_wall_s", "steps", "eval_mean", "eval_std", "eval_min")


def _run(job: tuple[DQNConfig, int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train one (network, seed) and evaluate its final network greedily."""
    config, greedy_episodes = job
    torch.set_num_threads(1)  # small networks: one thread per process is fastest
    start = time.perf_counter()
    result = train(config)  # config.torch_threads = 1 as well
    wall = time.perf_counter() - start
    with torch.no_grad():
        returns = evaluate(result.network, config.env_id, greedy_episodes,
                           seed=config.seed + EVAL_SEED_OFFSET)
    episodes = [{"network": config.network, "seed": config.seed, "step": row["step"],
                 "return": f"{row['return']:g}"} for row in result.episodes]
    summary = {"network": config.network, "seed": config.seed,
               "train_wall_s": f"{wall:.1f}", "steps": result.steps,
               "eval_mean": f"{returns.mean():.2f}", "eval_std": f"{returns.std():.2f}",
               "eval_min": f"{returns.min():g}"}
    print(f"{config.network:8s} seed {config.seed}: {wall:5.1f} s, greedy mean "
          f"{returns.mean():6.1f} (min {returns.min():g})", flush=True)
    return episodes, summary


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. SEEDS-1 per network")
    parser.add_argument("--greedy-episodes", type=int, default=20,
                        help="greedy episodes played by each final network [default: 20]")
    parser.add_argument("--workers", type=int, default=2, help="processes [default: 2]")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    parser.add_argument("--name", default="cartpole", help="file stem of the CSVs and JSON")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    overrides = config_overrides(args)
    for swept in ("seed", "network"):
        if swept in overrides:
            parser.error(f"--{swept} is set by the sweep (seeds 0..SEEDS-1, networks "
                         f"{NETWORKS}); got --{swept} {overrides[swept]}")
    if args.seeds < 1 or args.greedy_episodes < 1 or args.workers < 1:
        parser.error("--seeds, --greedy-episodes and --workers must be >= 1; got "
                     f"{args.seeds}, {args.greedy_episodes}, {args.workers}")
    try:
        base = preset("cartpole", **overrides)
        device = resolve_device(base.device)
    except ValueError as err:
        parser.error(str(err))
    seeds = list(range(args.seeds))
    jobs = [(dataclasses.replace(base, network=network, seed=seed), args.greedy_episodes)
            for network, seed in itertools.product(NETWORKS, seeds)]

    # Provenance before the run: its git state must not see the CSVs this run writes.
    record = provenance(
        command=["python", "experiments/cartpole.py", *(sys.argv[1:] if argv is None else argv)],
        device=device, config=base.to_dict(), overrides=overrides,
        networks=list(NETWORKS), seeds=seeds, greedy_episodes=args.greedy_episodes,
        eval_seed=f"training seed + {EVAL_SEED_OFFSET}", workers=args.workers,
        torch_threads_per_worker=1, runs=len(jobs),
    )
    start = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(_run, jobs, chunksize=1)
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    _write_csv(args.out / f"{args.name}_episodes.csv", EPISODE_COLUMNS,
               [row for episodes, _ in results for row in episodes])
    _write_csv(args.out / f"{args.name}_eval.csv", EVAL_COLUMNS,
               [summary for _, summary in results])
    record["wall_time_s"] = round(wall, 2)
    write_provenance(args.out / f"{args.name}.json", record)
    print(f"{len(jobs)} runs -> {args.out} in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
