"""MinAtar, dueling against single-stream: the committed summary of a sweep.

(Not ``minatar.py``: run as a script, that name would shadow the ``minatar`` package.)

The sweep itself runs on Ray (``duel_tutorial.sweep``); this script reads its folder and
writes the small files that ``book/14_does_dueling_help.ipynb`` loads::

    nice python -m duel_tutorial.sweep --games Asterix Breakout Freeway Seaquest \\
        SpaceInvaders --networks dueling single --seeds 0 1 2 3 4 --total-steps 100000 \\
        --checkpoint-interval 20000 --eval-interval 0 --eval-games 10 \\
        --out runs/minatar-100k
    python experiments/minatar_sweep.py runs/minatar-100k    # -> experiments/minatar/

Every trial is ``preset("minatar", env_id=..., network=..., seed=...)`` with the sweep's
overrides, one run directory each (``metrics.csv``: every training episode; ``final``:
the last network and its provenance). The summary keeps, per trial:

- its learning curve: the mean training return of the episodes that end in each block
  of ``--bin`` steps (``<name>_curves.csv``: game, network, seed, step, mean_return,
  episodes);
- its score: the mean training return of the episodes that end in the last 10% of the
  run (MinAtar's and Dopamine's convention: training returns, with epsilon at its
  floor of 0.1 by then), and the greedy evaluation of the final network from the
  sweep's ``results.csv`` (``<name>_runs.csv``);

and, per game, the return of uniformly random play over ``--random-episodes`` episodes
(``<name>_random.csv``), the floor that scores are measured from. ``<name>.json`` holds
the provenance: the sweep's command and grid, every trial's commit, device, versions
and wall time, and this script's own.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from duel_tutorial.envs import MINATAR_GAMES, make_env
from duel_tutorial.provenance import provenance
from duel_tutorial.run import load_metrics

RUN_FIELDS = ("game", "network", "seed", "steps", "wall_time_s", "final_return",
              "final_episodes", "eval_mean", "eval_std", "eval_episodes")
RANDOM_SEED = 2019  # MinAtar's year: any fixed seed, kept apart from the trials' seeds


def game_of(env_id: str) -> str:
    """``MinAtar/SpaceInvaders-v1 -> SpaceInvaders``."""
    return env_id.split("/", 1)[1].rsplit("-v", 1)[0]


def trial_summary(run: Path, bin_steps: int, last_fraction: float = 0.1
                  ) -> tuple[dict, list[dict], dict]:
    """One finished trial: its row, its binned learning curve and its ``final`` record."""
    final = json.loads((run / "final.json").read_text())
    config, steps = final["config"], final["step"]
    metrics = load_metrics(run)
    ends, returns = metrics["step"], metrics["return"]
    game = game_of(config["env_id"])
    key = {"game": game, "network": config["network"], "seed": config["seed"]}
    curve = []
    for b in range(bin_steps, steps + 1, bin_steps):
        inside = (ends > b - bin_steps) & (ends <= b)
        curve.append({**key, "step": b, "episodes": int(inside.sum()),
                      "mean_return": round(float(returns[inside].mean()), 4)
                      if inside.any() else ""})
    late = ends > steps * (1 - last_fraction)
    row = {**key, "steps": steps, "wall_time_s": final["wall_time_s"],
           "final_return": round(float(returns[late].mean()), 4) if late.any() else "",
           "final_episodes": int(late.sum())}
    return row, curve, final


def random_play(game: str, episodes: int, seed: int = RANDOM_SEED) -> np.ndarray:
    """Returns of uniformly random actions, episodes from seeds ``seed, seed + 1, ...``."""
    envs = make_env(f"MinAtar/{game}-v1")
    envs.action_space.seed(seed)
    out = []
    for i in range(episodes):
        envs.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
            total += float(reward[0])
            done = bool(terminated[0] or truncated[0])
        out.append(total)
    envs.close()
    return np.array(out)


def summarise(sweep: Path, out: Path, name: str, bin_steps: int, random_episodes: int,
              command: str) -> list[dict]:
    started = time.perf_counter()
    runs = sorted(p for p in sweep.iterdir() if (p / "final.json").exists())
    if not runs:
        raise ValueError(f"{sweep} holds no finished trial (a folder with final.json)")
    evals = {}
    if (sweep / "results.csv").exists():
        evals = {r["name"]: r for r in csv.DictReader((sweep / "results.csv").open())}
    rows, curves, trials, first = [], [], [], None
    for run in runs:
        row, curve, final = trial_summary(run, bin_steps)
        first = first or final  # the config every trial shares but for the grid's values
        result = evals.get(run.name, {})
        row.update(eval_mean=result.get("eval_mean", ""), eval_std=result.get("eval_std", ""),
                   eval_episodes=result.get("eval_episodes", ""))
        rows.append(row)
        curves += curve
        trials.append({"name": run.name, "git_commit": final["git_commit"],
                       "device": final["device"], "platform": final["platform"],
                       "versions": final["versions"], "wall_time_s": final["wall_time_s"],
                       "created": final["created"], "network": final["network"]})
    games = sorted({r["game"] for r in rows})
    unknown = set(games) - set(MINATAR_GAMES)
    if unknown:
        raise ValueError(f"expected MinAtar games {MINATAR_GAMES}; got {sorted(unknown)}")
    randoms = [{"game": g, "episodes": random_episodes, "seed": RANDOM_SEED,
                "mean": round(float(r.mean()), 4), "std": round(float(r.std()), 4)}
               for g in games for r in [random_play(g, random_episodes)]]
    out.mkdir(parents=True, exist_ok=True)
    for suffix, fields, table in (("runs", RUN_FIELDS, rows),
                                  ("curves", ("game", "network", "seed", "step",
                                              "mean_return", "episodes"), curves),
                                  ("random", ("game", "episodes", "seed", "mean", "std"),
                                   randoms)):
        with (out / f"{name}_{suffix}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
    sweep_record = json.loads((sweep / "sweep.json").read_text()) \
        if (sweep / "sweep.json").exists() else None
    if sweep_record is not None:  # the trials' configs differ only by the grid's values
        sweep_record.pop("configs", None)
    record = provenance(command=command, wall_time_s=time.perf_counter() - started)
    record.update(
        sweep=sweep_record, trials=trials, bin_steps=bin_steps, last_fraction=0.1,
        grid={"games": games, "networks": sorted({r["network"] for r in rows}),
              "seeds": sorted({r["seed"] for r in rows})},
        trial_wall_time_s=round(sum(t["wall_time_s"] for t in trials), 1),
        commits=sorted({t["git_commit"] for t in trials}),
        config=first["config"])
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="experiments/minatar_sweep.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="the sweep's --out folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "minatar")
    parser.add_argument("--name", default="minatar")
    parser.add_argument("--bin", type=int, default=5_000, dest="bin_steps",
                        help="steps per point of the learning curves")
    parser.add_argument("--random-episodes", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        if args.bin_steps < 1 or args.random_episodes < 1:
            raise ValueError(f"--bin and --random-episodes must be >= 1; got {args.bin_steps} "
                             f"and {args.random_episodes}")
        rows = summarise(args.sweep, args.out, args.name, args.bin_steps,
                         args.random_episodes, " ".join([parser.prog, *argv]))
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(f"{len(rows)} trials summarised into {args.out}/{args.name}_*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
