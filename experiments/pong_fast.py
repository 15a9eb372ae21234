"""Pong with the fast recipe: the committed summary of its training runs.

Each seed trains in its own run directory, in the background, resumable::

    nice python -m duel_tutorial.train --preset atari-fast --env ALE/Pong-v5 --seed 0 \\
        --torch-threads 1 --out runs/pong-fast-s0          # and seeds 1 and 2

and each finished run's network is evaluated in a fresh process under both protocols
(30 games, seed 2016: up to 30 no-ops, epsilon 0.001; the same games with sticky actions,
p = 0.25), by the script that ships agents, told not to refuse any score::

    python scripts/export_pretrained.py runs/pong-fast-s0 --name pong-fast-s0 \\
        --out runs/pong-fast-cards --min-return -21

Then this script reads the run directories (and the cards, if ``--cards`` is given) and
writes the small files a chapter loads::

    python experiments/pong_fast.py runs/pong-fast-s0 runs/pong-fast-s1 runs/pong-fast-s2 \\
        --cards runs/pong-fast-cards                    # -> experiments/pong_fast/

- ``<name>_episodes.csv``: every training game (seed, step, time_s, return);
- ``<name>_eval.csv``: the periodic 10-game greedy evaluations (seed, step, time_s, mean,
  std, min, max, and the dead and dormant hidden units the trainer counted at each one:
  NaN for runs from before it did);
- ``<name>.json``: per seed, where the run stands (steps, finished or not, wall time, the
  first evaluation that reached ``--bar``, with its step and wall clock), its final
  30-game evaluations from the cards, and each run's provenance (command, config,
  commit, device, versions, and its sessions: when each started or resumed, at which
  step, from which commit, on which device and processor, compiled or not, and how it
  ended); how much Adam's epsilon shrinks each parameter tensor's steps at that
  checkpoint (below); plus this script's own.

``time_s`` is the run's wall clock since it started, over all its sessions, evaluations
included; it is only as comparable as the machines and loads it ran under, which the
provenance records. A run that is still going is summarised up to its ``last``
checkpoint, and says so.

Adam moves a weight by ``lr * m / (sqrt(v) + eps)``, with ``m`` and ``v`` its running mean
gradient and mean squared gradient (bias-corrected). Where ``sqrt(v)`` is small next to
``eps`` the step shrinks by ``sqrt(v) / (sqrt(v) + eps)`` against an ``eps`` of zero. The
summary gives, per parameter tensor of the checkpoint's online network, the median of
``sqrt(v)``, the median of that factor and the share of weights with ``sqrt(v) < eps``,
read from the optimizer state the checkpoint keeps (chapter 10 measures the same effect
on the 1/sqrt(2) rescaling).

It also counts the hidden layer's units (the 512 ReLUs after ``lin``) that have stopped
working, measured directly: the latest checkpoint's network reads ``--observations``
observations drawn from the replay that its ``last`` checkpoint keeps (the states it
trains on). A unit is *dead* if it is zero on every one of them, and *dormant* (Sokar et
al., 2023) if its mean activation is at most ``tau`` times the layer's mean activation per
unit. A dead unit gets no gradient; only a change in the layers below it, or in the
states it sees, can bring it back.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from duel_tutorial.checkpoint import checkpoint_path, load_network_state, network_from_sidecar
from duel_tutorial.model import hidden_layer, hidden_unit_activity
from duel_tutorial.provenance import provenance
from duel_tutorial.replay import FrameReplayBuffer, ReplayBuffer
from duel_tutorial.run import EVAL_FILE, RESUMABLE_OVERRIDES, load_metrics, load_sessions

EPISODE_FIELDS = ("seed", "step", "time_s", "return")
EVAL_FIELDS = ("seed", "step", "time_s", "mean", "std", "min", "max", "dead_units",
               "dormant_units")  # the last two NaN for runs that did not log them
RECORD_FIELDS = ("command", "git_commit", "device", "cpu", "versions", "created")
OBSERVATIONS = 4096
SESSION_FIELDS = ("event", "step", "created", "command", "git_commit", "device", "cpu",
                  "session_s", "run_s", "error")


def sessions(run: Path) -> list[dict]:
    """The run's sessions (``sessions.jsonl``), each with the settings a resume may change
    (the device, threads, compilation: what its wall clock depends on)."""
    out = []
    for record in load_sessions(run):
        kept = {k: record[k] for k in SESSION_FIELDS if k in record}
        if "config" in record:
            kept.update({k: record["config"][k] for k in RESUMABLE_OVERRIDES
                         if k in record["config"]})
        out.append(kept)
    return out


def adam_step_scale(run: Path, name: str) -> dict:
    """How much Adam's epsilon shrinks the steps of each parameter tensor of checkpoint
    ``name`` of ``run`` (see the module's docstring); reads only the optimizer's tensors."""
    sidecar = json.loads((run / f"{name}.json").read_text())
    group = sidecar["optimizer"]["param_groups"][0]
    eps, beta2 = group["eps"], group["betas"][1]
    network, _ = network_from_sidecar(sidecar, checkpoint_path(run, name))
    layers = {}
    with safe_open(checkpoint_path(run, name), "pt") as f:
        for index, (param, _) in enumerate(network.named_parameters()):
            step = f.get_tensor(f"optimizer/state/{index}/step").item()
            v = f.get_tensor(f"optimizer/state/{index}/exp_avg_sq").double()
            root = (v / (1 - beta2**step)).sqrt().flatten()
            layers[param] = {"size": root.numel(),
                             "median_sqrt_v": float(root.median()),
                             "median_scale": float((root / (root + eps)).median()),
                             "share_below_eps": float((root < eps).double().mean())}
    return {"checkpoint": name, "eps": eps, "updates": int(step), "layers": layers}


def replay_observations(run: Path, name: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` observations drawn uniformly (seeded) from the replay that checkpoint ``name``
    of ``run`` keeps."""
    sidecar = json.loads((run / f"{name}.json").read_text())
    with safe_open(checkpoint_path(run, name), "pt") as f:
        state = {key.removeprefix("replay/"): f.get_tensor(key).numpy()
                 for key in f.keys() if key.startswith("replay/")}
    if not state:
        raise ValueError(f"{run}/{name} keeps no replay; expected a checkpoint saved with "
                         "its replay (a run's last)")
    if "frames" in state:
        envs, slots, *shape = state["frames"].shape
        buffer = FrameReplayBuffer(envs * slots, envs, tuple(shape),
                                   sidecar["network"]["obs_shape"][0], seed=seed)
    else:
        obs = state["obs"]
        buffer = ReplayBuffer(len(obs), obs.shape[1:], obs.dtype, seed=seed)
    buffer.load_state_dict(state)
    return buffer.sample(n).obs


def hidden_units(run: Path, name: str, n: int) -> dict | None:
    """:func:`~duel_tutorial.model.hidden_unit_activity` of checkpoint ``name``'s
    network on ``n`` observations from the run's ``last`` replay (the same step: a run
    saves its final next to its last); ``None`` for networks without that hidden layer
    (the MLPs)."""
    sidecar = json.loads((run / f"{name}.json").read_text())
    file = checkpoint_path(run, name)
    network, _ = network_from_sidecar(sidecar, file)
    with safe_open(file, "pt") as f:  # the online network's tensors only, not the replay
        weights = {key.removeprefix("online/"): f.get_tensor(key) for key in f.keys()
                   if key.startswith("online/")}
    load_network_state(network, weights, f"checkpoint {file}")
    network.eval()
    if hidden_layer(network) is None:
        return None
    last = json.loads((run / "last.json").read_text())["step"]
    if last != sidecar["step"]:
        raise ValueError(f"{run}: its last checkpoint is at step {last:,}, its {name} at "
                         f"{sidecar['step']:,}; expected the same step")
    return {"checkpoint": name, "step": last,
            **hidden_unit_activity(network, replay_observations(run, "last", n))}


def run_summary(run: Path, bar: float,
                observations: int = OBSERVATIONS) -> tuple[dict, list[dict], list[dict]]:
    """One run: its record, its training games and its periodic evaluations, up to its
    latest checkpoint (``final``, else ``last``)."""
    finished = (run / "final.json").exists()  # the sidecar alone: no tensors to load
    sidecar = json.loads((run / ("final.json" if finished else "last.json")).read_text())
    step, seed = sidecar["step"], sidecar["config"]["seed"]
    metrics = load_metrics(run)
    keep = metrics["step"] <= step  # rows past the checkpoint would be redone on resume
    if "time_s" not in metrics:
        raise ValueError(f"{run}/metrics.csv has no time_s column (a run started before "
                         "it existed); expected a run with the run's wall clock")
    episodes = [{"seed": seed, "step": int(s), "time_s": float(t), "return": float(r)}
                for s, t, r in zip(metrics["step"][keep], metrics["time_s"][keep],
                                   metrics["return"][keep], strict=True)]
    evals = []
    if (run / EVAL_FILE).exists():
        table = load_metrics(run, EVAL_FILE)
        evals = [{"seed": seed, **{k: (int(table[k][i]) if k == "step" else
                                       float(table[k][i]) if k in table else float("nan"))
                                   for k in EVAL_FIELDS[1:]}}
                 for i in range(len(table["step"])) if table["step"][i] <= step]
    reached = next((e for e in evals if e["mean"] >= bar), None)
    record = {
        "seed": seed, "run": run.name, "steps": step, "total_steps":
        sidecar["config"]["total_steps"], "finished": finished,
        "wall_time_s": sidecar["wall_time_s"], "games": len(episodes),
        "first_eval_at_bar": None if reached is None else
        {k: reached[k] for k in ("step", "time_s", "mean")},
        "config": sidecar["config"],
        **{k: sidecar.get(k) for k in RECORD_FIELDS},
        "sessions": sessions(run),
        "adam": adam_step_scale(run, "final" if finished else "last"),
        "hidden_units": hidden_units(run, "final" if finished else "last", observations),
    }
    record["state"] = "finished" if finished else state(record)
    return record, episodes, evals


def card_evaluations(card: Path) -> dict:
    """The 30-game evaluations of a card written by ``scripts/export_pretrained.py``."""
    data = json.loads(card.read_text())
    out = {"step": data["step"]}
    for key in ("evaluation", "evaluation_sticky"):
        if key in data:
            e = data[key]
            out[key] = {k: e[k] for k in ("protocol", "seed", "episodes", "mean", "std",
                                          "returns") if k in e}
    return out


def state(record: dict) -> str:
    """Where an unfinished run stands (a record's ``state``): how its last session ended
    (``stopped``: with a checkpoint, and it can resume), or ``running`` while that
    session has not ended (or was killed before it could say so)."""
    last = record["sessions"][-1]["event"] if record["sessions"] else "start"
    return "running" if last in ("start", "resume") else last


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, one per seed")
    parser.add_argument("--cards", type=Path, default=None,
                        help="folder of export_pretrained.py cards named <run>.json")
    parser.add_argument("--bar", type=float, default=19.0,
                        help="the evaluation mean a run must reach [default: 19]")
    parser.add_argument("--observations", type=int, default=OBSERVATIONS,
                        help="replayed observations the hidden units are counted on "
                             f"[default: {OBSERVATIONS}]")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "pong_fast")
    parser.add_argument("--name", default="pong_fast")
    args = parser.parse_args(argv)
    try:
        for run in args.runs:
            if not (run / "last.json").exists() and not (run / "final.json").exists():
                raise ValueError(f"{run} holds no checkpoint; expected a run directory")
        if args.observations < 1:
            raise ValueError(f"--observations must be a positive int; got {args.observations}")
        summaries = [run_summary(run, args.bar, args.observations) for run in args.runs]
        seeds = [record["seed"] for record, _, _ in summaries]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"expected one run per seed; got seeds {seeds}")
        records = []
        for (record, _, _), run in zip(summaries, args.runs, strict=True):
            card = args.cards / f"{run.name}.json" if args.cards else None
            record["final_evaluation"] = (card_evaluations(card) if card and card.exists()
                                          else None)
            records.append(record)
    except (OSError, ValueError, KeyError) as err:
        print(f"pong_fast.py: {err}", file=sys.stderr)
        return 2
    meta = provenance(bar=args.bar, runs=records)  # before the writes: a summary that
    args.out.mkdir(parents=True, exist_ok=True)     # replaces a committed one is not +dirty
    write_csv(args.out / f"{args.name}_episodes.csv", EPISODE_FIELDS,
              [row for _, episodes, _ in summaries for row in episodes])
    write_csv(args.out / f"{args.name}_eval.csv", EVAL_FIELDS,
              [row for _, _, evals in summaries for row in evals])
    (args.out / f"{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    for r in records:
        at = r["first_eval_at_bar"]
        print(f"seed {r['seed']}: {r['steps']:,} of {r['total_steps']:,} steps "
              f"({'finished' if r['finished'] else 'not finished: ' + r['state']}), "
              f"{r['wall_time_s'] / 3600:.2f} h; first 10-game evaluation >= {args.bar:g}: "
              + ("none" if at is None else
                 f"{at['mean']:.1f} at step {at['step']:,}, {at['time_s'] / 3600:.2f} h")
              + ("" if (u := r["hidden_units"]) is None else
                 f"; hidden units dead {u['dead']} of {u['units']}, dormant {u['dormant']}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
