"""Ship a trained run as package data: ``duel_tutorial/pretrained/NAME.*``.

    .venv/bin/python scripts/export_pretrained.py runs/pong-s0 --name pong --into-package
    .venv/bin/python scripts/export_pretrained.py runs/pong-s0 --name pong-s0 --out /tmp/x

It writes into the package (``duel_tutorial/pretrained/``) only with ``--into-package``;
otherwise ``--out DIR`` is required, and may not be the package folder. The name says
what the agent plays: it is the run's game (``"pong"`` for ``ALE/Pong-v5``,
``"cartpole"`` for ``CartPole-v1``), alone or followed by ``-`` and more (``pong-fast``,
``breakout-s1``); a run of another environment is refused.

Loads the run's ``final`` checkpoint (or ``--checkpoint last``, the latest periodic one,
to ship a run that is still going) on the CPU in this (fresh) process, evaluates it
with the protocol of Wang et al. (2016) (:func:`duel_tutorial.evaluate.evaluate`: up to
30 no-op starts, epsilon 0.001, full games, raw scores), and writes

- ``NAME.safetensors``: the online network only (float32; ~6.7 MB for Pong), with the
  sidecar in its metadata, loadable by :func:`duel_tutorial.load_pretrained`;
- ``NAME.json``: the same sidecar, readable: the training run's config, steps, frames,
  wall time, device, library versions and git commit, plus ``evaluation`` (protocol,
  seed, every return, mean, std), for Atari ``evaluation_sticky`` (the same games with
  sticky actions, p = 0.25: Machado et al., 2018), and ``export`` (this command's
  provenance);
- ``NAME_metrics.csv`` and ``NAME_eval.csv``: the run's training log and its periodic
  evaluations up to the shipped checkpoint's step, which the Atari chapter plots.

It refuses to ship an agent whose mean return is below ``--min-return``, which defaults
to the environment's bar in :data:`MIN_RETURN` (``ALE/Pong-v5``: 19); an environment
with no bar there needs ``--min-return``. Bad arguments are a one-line error and exit
status 2, an agent below the bar exit status 1; nothing is written in either case.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ale_py

from duel_tutorial.checkpoint import (
    PRETRAINED_DIR,
    check_pretrained_name,
    load_policy,
    save_checkpoint,
    with_prefix,
)
from duel_tutorial.envs import FRAME_SKIP, atari_game, check_env_id, is_atari
from duel_tutorial.evaluate import STICKY, evaluation_record
from duel_tutorial.provenance import provenance
from duel_tutorial.run import EVAL_FILE, METRICS_FILE, copy_log

MIN_RETURN = {
    "ALE/Pong-v5": 19.0,  # a game's return runs from -21 to 21: wins by 19+ points on average
}
"""The default ``--min-return`` per environment; others need ``--min-return``."""


def game_of(env_id: str) -> str:
    """The game an agent name starts with: ``"ALE/Pong-v5" -> "pong"``,
    ``"ALE/SpaceInvaders-v5" -> "space_invaders"``, ``"CartPole-v1" -> "cartpole"``."""
    if env_id.startswith("ALE/"):
        return atari_game(env_id)
    # [namespace/]name-vN -> name, lower-cased
    return check_env_id(env_id).rsplit("/", 1)[-1].rsplit("-v", 1)[0].lower()


def check_name(name: str, env_id: str) -> None:
    """A one-line ``ValueError`` unless ``name`` is ``game`` or ``game-...`` for ``env_id``."""
    check_pretrained_name(name)
    game = game_of(env_id)
    if name != game and not name.startswith(game + "-"):
        raise ValueError(f"--name {name!r} does not fit this run of {env_id}: its agent "
                         f"must be named {game!r} or {game + '-...'!r}")


def min_return(given: float | None, env_id: str) -> float:
    """``--min-return`` if given, else the environment's bar from :data:`MIN_RETURN`."""
    if given is not None:
        return given
    if env_id not in MIN_RETURN:
        raise ValueError(f"no known bar for {env_id} (bars: {MIN_RETURN}); "
                         "give --min-return")
    return MIN_RETURN[env_id]


def out_dir(out: Path | None, into_package: bool) -> Path:
    """Where to write: the package with ``--into-package``, else ``--out``, never the package."""
    if into_package:
        return PRETRAINED_DIR
    assert out is not None  # argparse requires one of --out and --into-package
    package = PRETRAINED_DIR.parent.resolve()
    if out.resolve().is_relative_to(package):
        raise ValueError(f"--out {out} is inside the package ({package}); pass "
                         f"--into-package instead to ship to {PRETRAINED_DIR}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export_pretrained.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with final.safetensors")
    parser.add_argument("--name", default="pong",
                        help="name of the shipped agent: the run's game, alone or followed "
                        "by '-...' [default: pong]")
    parser.add_argument("--checkpoint", default="final", choices=("final", "last"),
                        help="which checkpoint of the run to ship")
    parser.add_argument("--episodes", type=int, default=30, help="evaluation games")
    parser.add_argument("--seed", type=int, default=2016, help="evaluation seed")
    parser.add_argument("--min-return", type=float, default=None,
                        help=f"refuse to ship below this mean return [default: the "
                        f"environment's bar, {MIN_RETURN}; required for others]")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder to write to (not the package's)")
    where.add_argument("--into-package", action="store_true",
                       help=f"write to the package's {PRETRAINED_DIR.parent.name}/"
                       f"{PRETRAINED_DIR.name}/, replacing an agent of that name")
    args = parser.parse_args(argv)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)

    try:
        check_pretrained_name(args.name)
        out = out_dir(args.out, args.into_package)
        network, config, sidecar = load_policy(args.run, args.checkpoint, device="cpu")
        check_name(args.name, config.env_id)
        bar = min_return(args.min_return, config.env_id)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    record = evaluation_record(network, config.env_id, args.episodes, args.seed)
    returns, mean = record["returns"], record["mean"]
    print(f"{config.env_id}: {args.episodes} games, mean {mean:.2f}, std {record['std']:.2f}, "
          f"min {min(returns):.0f}, max {max(returns):.0f} ({record['wall_time_s']:.0f} s)")
    if mean < bar:
        print(f"not shipped: mean {mean:.2f} < --min-return {bar}")
        return 1
    sticky = None
    if is_atari(config.env_id):  # both protocols on every Atari card
        sticky = evaluation_record(network, config.env_id, args.episodes, args.seed, STICKY)
        print(f"with sticky actions (p={STICKY}): mean {sticky['mean']:.2f}, "
              f"std {sticky['std']:.2f} ({sticky['wall_time_s']:.0f} s)")

    # the network load_policy already read: the checkpoint (with its replay, for `last`,
    # hundreds of MB) is not read a second time
    online = with_prefix("online", network.state_dict())
    card = {
        **sidecar,
        "frames": sidecar["step"] * FRAME_SKIP,
        "evaluation": record,
        **({"evaluation_sticky": sticky} if sticky else {}),
        "export": provenance(device="cpu", wall_time_s=record["wall_time_s"], run=str(args.run)),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(out / args.name, online, card)
    for log in (METRICS_FILE, EVAL_FILE):
        if (args.run / log).exists():
            copy_log(args.run / log, out / f"{args.name}_{log}", last_step=sidecar["step"])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
