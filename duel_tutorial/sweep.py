"""Sweeps: a grid of training runs (games x networks x seeds, or any config grid) on Ray.

Each trial is one :func:`~duel_tutorial.train.train` call with its own run directory
under the sweep's folder, so a trial is resumable and carries its provenance exactly
like a run started from the command line. :func:`run_trial` is idempotent: a finished
trial (a ``final`` checkpoint) is read back, not trained again; an interrupted one (a
``last`` checkpoint) is resumed; anything else starts fresh. That makes a failed trial,
or a whole sweep started again with the same command, pick up where it stopped.

On Ray: ``ray.init()`` with no address starts a Ray instance on this machine; with the
address of a Ray cluster (``--address ray://head:10001`` or ``auto`` on a cluster node)
the same sweep runs there, one trial per task. Ray retries a task whose worker died
(``max_retries``) and one that raised (``retry_exceptions``); the retry resumes from the
trial's last checkpoint. On a cluster, ``--out`` must be storage every node sees (a
shared filesystem), since each trial writes its run directory where it runs.

Ray is an optional extra (``pip install 'duel-tutorial[sweep]'``); nothing else in the
package imports this module.

    python -m duel_tutorial.sweep --preset minatar --games Breakout Seaquest \\
        --networks dueling single --seeds 0 1 2 --out runs/minatar-sweep
    python -m duel_tutorial.sweep ... --address auto      # on a Ray cluster node

The sweep writes ``results.csv`` (one row per trial: game, network, seed, steps, wall
time, the final greedy evaluation) and ``sweep.json`` (the command, the grid and the
provenance) in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from duel_tutorial.config import PRESETS, DQNConfig, config_overrides

RESULT_COLUMNS = ("name", "env_id", "network", "seed", "steps", "wall_time_s", "eval_mean",
                  "eval_std", "eval_episodes", "resumed")


def trial_name(config: DQNConfig) -> str:
    """The trial's run directory name: ``<game>-<network>-s<seed>``."""
    return f"{config.env_id.replace('/', '-')}-{config.network}-s{config.seed}"


def grid(base: DQNConfig, env_ids: Sequence[str], networks: Sequence[str],
         seeds: Sequence[int]) -> list[DQNConfig]:
    """Every combination, as full configs (validated now, not in a worker), seed by seed:
    a sweep stopped part way has the same seeds done for every game and network."""
    return [dataclasses.replace(base, env_id=env_id, network=network, seed=seed)
            for seed in seeds for env_id in env_ids for network in networks]


def run_trial(config: DQNConfig, root: str | Path, eval_episodes: int = 10) -> dict[str, Any]:
    """Train one trial in ``root/<trial_name>`` (resuming or skipping as the folder says)
    and evaluate its final network greedily; returns its results row."""
    from duel_tutorial.checkpoint import load_policy
    from duel_tutorial.evaluate import EVAL_SEED_OFFSET, evaluate
    from duel_tutorial.run import holds_run
    from duel_tutorial.train import train

    out = Path(root) / trial_name(config)
    resumed = False
    if not (out / "final.safetensors").exists():
        resumed = holds_run(out)
        train(config, out, resume=resumed, command=f"duel_tutorial.sweep trial {out.name}")
    network, saved, sidecar = load_policy(out, "final", device="cpu")
    returns = evaluate(network, saved.env_id, eval_episodes, seed=saved.seed + EVAL_SEED_OFFSET)
    return {"name": out.name, "env_id": saved.env_id, "network": saved.network,
            "seed": saved.seed, "steps": sidecar["step"],
            "wall_time_s": round(sidecar["wall_time_s"], 1),
            "eval_mean": round(float(returns.mean()), 3),
            "eval_std": round(float(returns.std()), 3), "eval_episodes": eval_episodes,
            "resumed": resumed}


def run_sweep(configs: Sequence[DQNConfig], root: str | Path, *, address: str | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              max_retries: int = 2, eval_episodes: int = 10,
              command: str | None = None, ray_init: dict[str, Any] | None = None,
              ) -> list[dict[str, Any]]:
    """Run every config as a Ray task; write ``results.csv`` and ``sweep.json`` in ``root``.

    ``address=None`` starts (or joins) a local Ray instance; a cluster address runs the
    same tasks there. ``gpus_per_trial`` > 0 gives each trial GPUs (Ray sets
    ``CUDA_VISIBLE_DEVICES``; the config's ``device="auto"`` then trains on CUDA).
    ``ray_init`` passes more arguments to ``ray.init`` (e.g. ``num_cpus``).
    """
    try:
        import ray
    except ImportError:
        raise ValueError("sweeps need Ray: pip install 'duel-tutorial[sweep]'") from None
    from duel_tutorial.provenance import provenance

    names = [trial_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("two trials of the sweep share a run directory name; vary the "
                         "env id, the network or the seed between them")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **(ray_init or {}))
    try:
        task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                          max_retries=max_retries, retry_exceptions=True)(run_trial)
        rows = ray.get([task.remote(c, str(root), eval_episodes) for c in configs])
    finally:
        if owns_ray:
            ray.shutdown()
    wall = time.perf_counter() - started
    with (root / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["name"]))
    record = provenance(command=command, wall_time_s=wall)
    record.update(trials=len(configs), ray_address=address or "local",
                  cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                  max_retries=max_retries,
                  eval_episodes=eval_episodes, configs=[c.to_dict() for c in configs])
    (root / "sweep.json").write_text(json.dumps(record, indent=1) + "\n")
    return rows


def build_parser() -> argparse.ArgumentParser:
    from duel_tutorial.config import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="python -m duel_tutorial.sweep",
        description="A grid of training runs (games x networks x seeds) on Ray: local with no "
        "--address, a Ray cluster with one. Config flags override the preset for every trial.")
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="minatar")
    parser.add_argument("--games", nargs="+", required=True,
                        help="environment ids, or MinAtar game names (Breakout, ...)")
    parser.add_argument("--networks", nargs="+", default=["dueling", "single"],
                        choices=["dueling", "single"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--address", default=None,
                        help="Ray cluster address ('auto' on a cluster node, ray://host:10001); "
                        "default: a Ray instance on this machine")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--eval-games", type=int, default=10,
                        help="greedy episodes to evaluate each final network")
    add_config_arguments(parser, "minatar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in config_overrides(args).items()
                 if k not in ("env_id", "network", "seed")}
    # a full id (ALE/Pong-v5, CartPole-v1) as given; a bare name (Breakout): MinAtar's game
    env_ids = [g if re.search(r"-v\d+$", g) else f"MinAtar/{g}-v1" for g in args.games]
    try:
        base = dataclasses.replace(PRESETS[args.preset], **overrides)
        configs = grid(base, env_ids, args.networks, args.seeds)
        rows = run_sweep(configs, args.out, address=args.address,
                         cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, max_retries=args.max_retries,
                         eval_episodes=args.eval_games, command=" ".join([parser.prog, *argv]))
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    for row in sorted(rows, key=lambda r: r["name"]):
        print(f"{row['name']:<40} steps {row['steps']:>9,}  eval {row['eval_mean']:8.2f} "
              f"± {row['eval_std']:.2f}" + ("  (resumed)" if row["resumed"] else ""))
    print(f"{len(rows)} trials; results in {args.out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
