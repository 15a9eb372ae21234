"""The corridor experiment of Wang et al. (2016), Figure 3: SE of Q^pi vs updates.

    nice python experiments/corridor.py                    # Adam (the package default)
    nice python experiments/corridor.py --optimizer sgd --lr 0.1 --name corridor_se_sgd
    nice python experiments/corridor.py --seeds 3 --gamma 0.99 --name corridor_se_gamma099
    nice python experiments/corridor.py --seeds 3 --updates 2000 --out /tmp/corridor

The first three made the committed results in ``experiments/corridor/`` that
``book/11_corridor.ipynb`` loads (13, 16 and 3.5 minutes on a shared 2-core CPU; each
JSON records its wall time).

Runs 5/10/20 actions x {single, dueling} x seeds, each a call of
``duel_tutorial.corridor.train_policy_evaluation`` on one CPU thread, in a pool of
``--workers`` processes. Writes ``<out>/<name>.csv`` (columns n_actions, network, seed,
updates, se; SE recorded at 0 and ``--points`` log-spaced update counts) and
``<out>/<name>.json`` (provenance: command, commit, config, seeds, wall time); the
defaults are ``experiments/corridor/corridor_se.*``.
Every hyperparameter is a ``CorridorConfig`` field and has a flag.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import time
import typing
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from duel_tutorial.corridor import (
    NETWORK_KINDS,
    CorridorConfig,
    log_spaced_steps,
    train_policy_evaluation,
)
from duel_tutorial.provenance import provenance, write_provenance

OUT = Path(__file__).resolve().parent / "corridor"
ACTION_COUNTS = (5, 10, 20)


def _run(job: tuple[CorridorConfig, str, int, list[int]]) -> list[dict[str, Any]]:
    config, kind, seed, record_at = job
    torch.set_num_threads(1)  # small networks: one thread per process is fastest
    return [
        {"n_actions": config.n_actions, "network": kind, "seed": seed, "updates": step,
         "se": f"{se:.6g}"}
        for step, se in train_policy_evaluation(kind, config, seed, record_at)  # type: ignore[arg-type]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. SEEDS-1 per cell")
    parser.add_argument("--points", type=int, default=30, help="log-spaced record points")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    parser.add_argument("--name", default="corridor_se", help="file stem of the CSV and JSON")
    hints = typing.get_type_hints(CorridorConfig)
    for f in dataclasses.fields(CorridorConfig):
        if f.name == "n_actions":
            continue  # the sweep sets it
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                            type=str if typing.get_origin(hints[f.name]) else hints[f.name],
                            help=f"{f.metadata['help']} [default: {f.default}; "
                                 f"source: {f.metadata['source']}]")
    args = parser.parse_args(argv)
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(CorridorConfig)
              if f.name != "n_actions"}
    configs = [CorridorConfig(n_actions=n, **fields) for n in ACTION_COUNTS]
    seeds = list(range(args.seeds))
    record_at = [0, *log_spaced_steps(configs[0].updates, args.points)]
    jobs = [(config, kind, seed, record_at)
            for config, kind, seed in itertools.product(configs, NETWORK_KINDS, seeds)]

    # Provenance before the run: its git state must not see the CSV this run writes.
    config = configs[0].to_dict()
    config["n_actions"] = list(ACTION_COUNTS)
    record = provenance(
        command=["python", "experiments/corridor.py", *(sys.argv[1:] if argv is None else argv)],
        config=config, seeds=seeds, record_at=record_at,
        workers=args.workers, torch_threads_per_worker=1, runs=len(jobs),
    )
    start = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        rows = [row for result in pool.imap(_run, jobs) for row in result]
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{args.name}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["n_actions", "network", "seed", "updates", "se"])
        writer.writeheader()
        writer.writerows(rows)
    record["wall_time_s"] = round(wall, 2)
    write_provenance(args.out / f"{args.name}.json", record)
    print(f"{len(jobs)} runs, {len(rows)} rows -> {args.out} in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
