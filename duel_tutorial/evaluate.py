"""Evaluate a trained Q-network: the returns of its greedy policy.

From Python::

    from duel_tutorial.checkpoint import load_policy
    from duel_tutorial.evaluate import evaluate

    network, config, _ = load_policy("runs/cartpole-s0")      # the final checkpoint
    returns = evaluate(network, config.env_id, episodes=20, seed=1000)

From the shell::

    python -m duel_tutorial.evaluate runs/cartpole-s0 --episodes 20
    python -m duel_tutorial.evaluate --pretrained pong --episodes 3   # a shipped agent
    python -m duel_tutorial.evaluate --pretrained pong --sticky-actions  # p = 0.25

Episode ``k`` is reset with seed ``seed + k``, so an evaluation is reproducible and its
episodes differ from the training ones (the default seed is the training seed + 1000).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from duel_tutorial.checkpoint import (
    check_compatible,
    checkpoint_path,
    load_policy,
    pretrained_names,
    pretrained_path,
)
from duel_tutorial.envs import (
    EVAL_EPSILON,
    check_env_id,
    is_atari,
    make_atari_vector_env,
    make_env,
)
from duel_tutorial.exploration import epsilon_greedy

EVAL_SEED_OFFSET = 1000
STICKY = 0.25  # Machado et al. (2018)'s repeat-action probability, ALE v5's default
PROTOCOL = ("up to 30 no-op starts, epsilon 0.001, full games (no episodic life), raw scores, "
            "108,000-frame cap (Wang et al., 2016)")


def evaluation_record(network: nn.Module, env_id: str, episodes: int, seed: int,
                      repeat_action_probability: float = 0.0) -> dict[str, Any]:
    """Evaluate and describe it, as a shipped agent's card stores it: the protocol, the
    seed, every return, their mean and std, and the wall time."""
    start = time.perf_counter()
    with torch.no_grad():
        returns = evaluate(network, env_id, episodes, seed,
                           repeat_action_probability=repeat_action_probability)
    protocol = PROTOCOL if is_atari(env_id) else "greedy, full episodes"
    if repeat_action_probability:
        protocol += (f"; sticky actions, repeat probability {repeat_action_probability:g} "
                     "(Machado et al., 2018)")
    return {"protocol": protocol, "repeat_action_probability": repeat_action_probability,
            "episodes": episodes, "seed": seed, "returns": [float(r) for r in returns],
            "mean": round(float(returns.mean()), 3), "std": round(float(returns.std()), 3),
            "wall_time_s": round(time.perf_counter() - start, 2)}


def evaluate(
    network: nn.Module,
    env_id: str,
    episodes: int = 20,
    seed: int = 0,
    epsilon: float | None = None,
    on_episode: Callable[[int, float], None] | None = None,
    repeat_action_probability: float = 0.0,
) -> np.ndarray:
    """Returns ``(episodes,)`` of ``network``'s epsilon-greedy policy.

    ``on_episode(k, episode_return)`` is called as each episode ends (for progress).

    Episode ``k`` starts from ``env.reset(seed=seed + k)``. The network is called on the
    device its parameters live on. ``epsilon`` defaults to 0 (greedy), and for Atari to
    :data:`~duel_tutorial.envs.EVAL_EPSILON` (0.001).

    Atari ids (``ALE/...``) follow the evaluation protocol of Wang et al. (2016): the
    evaluation preprocessing of :mod:`duel_tutorial.envs` (up to 30 no-op starts, full
    games without episodic life, raw unclipped scores, the 108,000-frame cap), all
    ``episodes`` games played at once in ale-py's vector env, one game per sub-env.
    ``repeat_action_probability`` > 0 adds *sticky actions* (Atari only): at every
    emulator frame the previous action is repeated with that probability, instead of the
    agent's. Machado et al. (2018) recommend 0.25 (the default of gymnasium's
    ``ALE/...-v5``); the paper's protocol has none.
    """

    check_env_id(env_id)  # before gymnasium sees it: 'mod:Env-v0' would import mod
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1; got {episodes!r}")
    if not 0.0 <= repeat_action_probability < 1.0:
        raise ValueError(f"repeat_action_probability must be in [0, 1); got "
                         f"{repeat_action_probability!r}")
    if is_atari(env_id):
        return _evaluate_atari(network, env_id, episodes, seed,
                               EVAL_EPSILON if epsilon is None else epsilon, on_episode,
                               repeat_action_probability)
    if repeat_action_probability:
        raise ValueError(f"sticky actions (repeat_action_probability) are an Atari setting; "
                         f"{env_id} is not an ALE/... id")
    epsilon = 0.0 if epsilon is None else epsilon
    env = make_env(env_id, num_envs=1)
    n_actions = int(env.single_action_space.n)
    rng = np.random.default_rng(seed)
    returns = np.zeros(episodes)
    was_training = network.training
    network.eval()
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            done = False
            while not done:
                action = epsilon_greedy(network, obs, epsilon, n_actions, rng)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[k] += reward[0]
                done = bool(terminated[0] or truncated[0])
            if on_episode is not None:
                on_episode(k, float(returns[k]))
    finally:
        env.close()
        network.train(was_training)
    return returns


def _evaluate_atari(network: nn.Module, env_id: str, episodes: int, seed: int,
                    epsilon: float, on_episode: Callable[[int, float], None] | None,
                    repeat_action_probability: float = 0.0) -> np.ndarray:
    """One full game per sub-environment of an evaluation-preset vector env."""
    env = make_atari_vector_env(env_id, episodes, train=False,
                                repeat_action_probability=repeat_action_probability)
    n_actions = int(env.single_action_space.n)
    device = next(network.parameters()).device
    rng = np.random.default_rng(seed)
    returns = np.zeros(episodes)
    playing = np.ones(episodes, dtype=bool)  # still in its first game
    was_training = network.training
    network.eval()
    try:
        obs, _ = env.reset(seed=seed)  # sub-env k gets seed + k
        while playing.any():
            actions = epsilon_greedy(network, obs, epsilon, n_actions, rng, device)
            obs, reward, terminated, truncated, _ = env.step(actions)
            returns += np.where(playing, reward, 0)
            ended = playing & (terminated | truncated)
            playing &= ~ended
            for k in np.flatnonzero(ended) if on_episode is not None else ():
                on_episode(int(k), float(returns[k]))
    finally:
        env.close()
        network.train(was_training)
    return returns


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m duel_tutorial.evaluate",
        description="Greedy returns of a trained run's checkpoint: mean and standard deviation.",
    )
    parser.add_argument("run", type=Path, nargs="?",
                        help="run directory (written by duel_tutorial.train) or .safetensors file")
    parser.add_argument("--pretrained", metavar="NAME", default=None,
                        help=f"a shipped agent instead of a run: one of {pretrained_names()}")
    parser.add_argument("--episodes", type=int, default=20, help="episodes to play [default: 20]")
    parser.add_argument("--checkpoint", default="final",
                        help="checkpoint name in the run directory: final or last [default: final]")
    parser.add_argument("--seed", type=int, default=None,
                        help="episode k is reset with seed + k [default: training seed + 1000]")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="probability of a random action [default: 0, greedy; Atari: "
                        f"{EVAL_EPSILON}, the protocol of Wang et al. 2016]")
    parser.add_argument("--sticky-actions", type=float, nargs="?", const=0.25, default=0.0,
                        metavar="P", help="Atari: repeat the previous action with probability "
                        "P at every frame (Machado et al., 2018) [default: 0, the paper's "
                        "protocol; without P: 0.25]")
    parser.add_argument("--env", default=None,
                        help="environment id [default: the one the run was trained on]")
    parser.add_argument("--device", default=None, help="torch device [default: cuda if available]")
    parser.add_argument("--quiet", action="store_true", help="no line per finished episode")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.run is None) == (args.pretrained is None):
        parser.error("give a run directory or --pretrained NAME (one of them)")

    def report(k: int, episode_return: float) -> None:
        done.append(episode_return)
        print(f"episode {k + 1} ({len(done)} of {args.episodes} done): return {episode_return:g}"
              f"; mean so far {np.mean(done):.2f}", file=sys.stderr, flush=True)

    done: list[float] = []
    try:
        if args.pretrained is not None:
            args.run, args.checkpoint = pretrained_path(args.pretrained), "final"
        network, config, sidecar = load_policy(args.run, args.checkpoint, args.device)
        env_id = check_env_id(args.env or config.env_id)
        if args.env:

            probe = make_atari_vector_env(env_id, 1) if is_atari(env_id) else make_env(env_id)
            check_compatible(sidecar, obs_shape=probe.single_observation_space.shape,
                             n_actions=int(probe.single_action_space.n))
            probe.close()
        seed = args.seed if args.seed is not None else config.seed + EVAL_SEED_OFFSET
        with torch.no_grad():
            returns = evaluate(network, env_id, args.episodes, seed, args.epsilon,
                               on_episode=None if args.quiet else report,
                               repeat_action_probability=args.sticky_actions)
    except (ValueError, gym.error.Error) as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    epsilon = args.epsilon if args.epsilon is not None else (
        EVAL_EPSILON if env_id.startswith("ALE/") else 0.0)
    policy = "greedy" if epsilon == 0 else f"epsilon={epsilon}"
    if args.sticky_actions:
        policy += f", sticky actions p={args.sticky_actions:g}"
    print(f"{env_id}: {checkpoint_path(args.run, args.checkpoint)} (step {sidecar['step']}, "
          f"{config.network}), {args.episodes} {policy} episodes from seed {seed}: "
          f"mean return {returns.mean():.2f}, std {returns.std():.2f} "
          f"(min {returns.min():.1f}, max {returns.max():.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
