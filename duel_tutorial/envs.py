"""Atari environments with the standard DQN preprocessing, one env or many.

Two factories build the same pipeline:

- :func:`make_atari_env`: one gymnasium environment, made of gymnasium's own
  ``AtariPreprocessing`` and ``FrameStackObservation`` plus three small wrappers defined
  here (:class:`FireReset`, :class:`EpisodeFrameCap`, :class:`EpisodicLife`). Easy to read
  and to step through; this is what the chapters show.
- :func:`make_atari_vector_env`: ``num_envs`` copies run by ale-py's
  ``AtariVectorEnv``, whose preprocessing is written in C++ and steps the emulators in
  threads. Same settings, same observations (``tests/test_envs.py`` checks it step by
  step), more steps per second (``benchmarks/atari_env_throughput.py``), the more so
  with more cores; this is what training uses.

Both return observations ``(4, 84, 84) uint8``, channels first (the vector env batches
them to ``(num_envs, 4, 84, 84)``), which is what :class:`duel_tutorial.DuelingQNetwork`
takes. The action set is the game's minimal one: ``n_actions = env.action_space.n`` for
one env, ``env.single_action_space.n`` for the vector env (Pong: 6, Breakout: 4).

The preprocessing, and where each choice comes from (the training preset; the evaluation
preset, ``train=False``, differs only where noted):

1. **Deterministic emulator.** ``repeat_action_probability=0.0``: the ALE repeats nothing
   on its own, as in Mnih et al. (2015) and Wang et al. (2016); a start differs from
   another only through the no-ops below. gymnasium's ``v5`` environments default to
   0.25 instead: the *sticky actions* that Machado et al. (2018) recommend so that an
   agent cannot succeed by memorising an open-loop action sequence. It is a parameter;
   pass 0.25 to follow Machado et al.
2. **Up to 30 no-op starts** (Mnih et al. 2015, Extended Data Table 1: "no-op max 30").
   After each reset the emulator runs a random number of "do nothing" frames, so
   episodes start in different states. ``noop_max=0`` turns it off. The single env
   draws 1 to ``noop_max`` no-op frames uniformly (gymnasium's ``AtariPreprocessing``);
   the vector env (ale-py's C++) draws ``k`` from 0 to ``noop_max - 1`` and runs
   ``k - 1`` no-op frames after the FIRE frame below (``k`` without FIRE). Their random
   generators differ too, so with ``noop_max > 0`` the two pipelines start the same
   seed in different states; with ``noop_max=0`` they agree.
3. **Fire on reset** for games whose minimal action set has FIRE (Breakout, Pong, ...):
   one emulator frame of FIRE right after the reset, before the no-ops. Breakout does
   not launch the ball until FIRE is pressed, so a policy that never presses it idles
   until the episode cap. This is not in Mnih et al. (2015); it is a convention of
   OpenAI Baselines' Atari wrappers (``FireResetEnv``) and the default of ale-py's
   vector env, whose exact behaviour (one frame, only on a real reset) we copy. After a
   lost life the agent presses FIRE itself: FIRE is in its action set.
4. **Frame skip 4 with max-pooling** (Mnih et al. 2015): the agent picks an action
   every 4th frame and it is repeated on the skipped frames; rewards are summed over the
   4 frames; the observation is the pixel-wise maximum of the last two frames, which
   removes the flicker of objects the Atari draws only on every other frame.
5. **84x84 grayscale** (Mnih et al. 2015, "extract the Y channel ... and rescale it to
   84 x 84"): the ALE's grayscale palette gives the luminance; both pipelines resize the
   210x160 screen with OpenCV's ``INTER_AREA`` (pixel-area averaging). The paper does
   not name its interpolation.
6. **Stack of the last 4 frames** (Mnih et al. 2015, ``m = 4``), oldest first, so a
   single observation shows motion. After a reset the older slots are zeros
   (``[0, 0, 0, frame]``), as in the vector env.
7. **Episode cap of 108,000 frames** (``max_episode_frames``): 30 minutes of play at
   60 frames per second, i.e. 27,000 agent steps at frame skip 4, the default of the
   ALE's ``v5`` environments and of its vector env. Frames are counted from the end of
   the reset (no-ops not included) and run on across lost lives; the step that reaches
   the cap returns ``truncated=True`` (unless the game also ends on it). Mnih et al.
   (2015) evaluated episodes of up to 5 minutes: ``max_episode_frames=18_000``
   reproduces that. On that step ale-py's vector env stops before grabbing the 4th
   frame, so its newest frame is the max of frame 3 and the previous step's pooled
   frame; the single env pools frames 3 and 4. That frame is the only difference
   between the pipelines with ``noop_max=0``.
8. **Episodic life, training only** (Mnih et al. 2015: the number of lives "is then
   used to mark the end of an episode during training"): losing a life returns
   ``terminated=True``, so the Q-learning target does not bootstrap across a death, but
   the game goes on: the next ``reset()`` is a *soft* one that returns the current
   observation without touching the emulator; only a real game over (or the cap) resets
   the game, as OpenAI Baselines' ``EpisodicLifeEnv`` does. In the vector env this is
   ``life_loss_info=True``. ale-py's own ``episodic_life=True`` instead resets the whole
   game on every lost life, so the agent would only ever play its first life: we do not
   use it. Games without lives (Pong) are unaffected.
9. **Reward clipping, training only** (Mnih et al. 2015: positive rewards clipped to 1,
   negative to -1, 0 unchanged), which bounds the size of the TD errors so that one
   learning rate suits every game. The sum over the 4 skipped frames is clipped, not
   each frame.

**Evaluation** (``train=False``, the protocol of Wang et al. 2016): up to 30 no-op
starts, full games (no episodic life), raw game scores (no reward clipping); the agent
acts epsilon-greedily with :data:`EVAL_EPSILON` = 0.001.

**Vector env autoreset.** :func:`make_atari_vector_env` keeps ale-py's default
``NEXT_STEP`` autoreset: after a sub-environment's game ends (``terminated`` at a game
over, or ``truncated`` at the cap), its *next* ``step`` ignores the action and returns
the first observation of a new game with reward 0. After a lost life (``terminated``
but the game goes on) the next step is an ordinary step. A training loop that skips the
transition following every ``terminated | truncated`` never stores a transition across
two games; it drops one genuine transition per lost life, which is harmless. The
factory keeps ``NEXT_STEP`` on purpose: with ``SAME_STEP`` and ``life_loss_info``,
ale-py 0.12.1 fills ``info["final_obs"]`` with stale frames for a sub-environment that
lost a life (it did not reset; its returned ``obs`` is the right next observation), and
only a sub-environment that really reset (game over or cap) has a true ``final_obs``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, SupportsFloat

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import AtariPreprocessing, ClipReward, FrameStackObservation

gym.register_envs(ale_py)

NOOP_MAX = 30
"""Most no-op frames after a reset (Mnih et al. 2015, Extended Data Table 1)."""
FRAME_SKIP = 4
"""Emulator frames per agent step (Mnih et al. 2015)."""
SCREEN_SIZE = 84
"""Side of the square grayscale frame (Mnih et al. 2015)."""
FRAME_STACK = 4
"""Frames per observation (Mnih et al. 2015, m = 4)."""
MAX_EPISODE_FRAMES = 108_000
"""Episode cap in emulator frames: 30 minutes at 60 Hz = 27,000 steps at frame skip 4."""
EVAL_EPSILON = 0.001
"""Exploration rate of the evaluation policy (Wang et al. 2016)."""


@dataclasses.dataclass(frozen=True)
class AtariSettings:
    """Every preprocessing setting, shared by :func:`make_atari_env` and the vector env.

    Build it with :func:`atari_settings`, which fills in the train or evaluation preset.
    """

    noop_max: int = NOOP_MAX  # up to 30 random no-op frames after reset (Mnih et al. 2015)
    frame_skip: int = FRAME_SKIP  # repeat each action 4 frames, max-pool the last 2 (Mnih 2015)
    screen_size: int = SCREEN_SIZE  # 84x84 grayscale (Mnih et al. 2015)
    frame_stack: int = FRAME_STACK  # last 4 frames, channels first (Mnih et al. 2015)
    terminal_on_life_loss: bool = True  # a lost life ends the episode, train only (Mnih 2015)
    clip_rewards: bool = True  # reward -> clip(reward, -1, 1), train only (Mnih et al. 2015)
    fire_reset: bool = True  # press FIRE after reset if the game has it (Baselines, ale-py)
    repeat_action_probability: float = 0.0  # sticky actions off (Mnih 2015; Machado 2018: 0.25)
    max_episode_frames: int = MAX_EPISODE_FRAMES  # 108,000 frames = 27,000 steps (ALE v5)


def atari_settings(
    *,
    train: bool = True,
    noop_max: int = NOOP_MAX,
    frame_skip: int = FRAME_SKIP,
    screen_size: int = SCREEN_SIZE,
    frame_stack: int = FRAME_STACK,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    fire_reset: bool = True,
    repeat_action_probability: float = 0.0,
    max_episode_frames: int = MAX_EPISODE_FRAMES,
) -> AtariSettings:
    """The checked settings of the training (``train=True``) or evaluation preset.

    ``terminal_on_life_loss`` and ``clip_rewards`` default to ``train``; every other
    setting is the same for training and evaluation. See the module docstring for the
    source of each one.
    """
    for name, value, low in (
        ("noop_max", noop_max, 0),
        ("frame_skip", frame_skip, 1),
        ("screen_size", screen_size, 1),
        ("frame_stack", frame_stack, 1),
        ("max_episode_frames", max_episode_frames, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    if max_episode_frames % frame_skip:
        raise ValueError(
            f"max_episode_frames must be a multiple of frame_skip={frame_skip}; "
            f"got {max_episode_frames}"
        )
    if not 0.0 <= repeat_action_probability <= 1.0:
        raise ValueError(
            f"repeat_action_probability must be in [0, 1]; got {repeat_action_probability!r}"
        )
    return AtariSettings(
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        frame_stack=frame_stack,
        terminal_on_life_loss=train if terminal_on_life_loss is None else terminal_on_life_loss,
        clip_rewards=train if clip_rewards is None else clip_rewards,
        fire_reset=fire_reset,
        repeat_action_probability=float(repeat_action_probability),
        max_episode_frames=max_episode_frames,
    )


_ENV_ID = re.compile(r"(?:[A-Za-z][A-Za-z0-9_-]*/)?[A-Za-z][A-Za-z0-9_.-]*-v[0-9]+")
"""``[namespace/]name-vN`` in ASCII: a strict subset of gymnasium's own id grammar
(``gymnasium.envs.registration.ENV_ID_RE``) that every registered id matches and that
has no ``:``, the separator of ``module:Env``, which gymnasium imports."""


def check_env_id(env_id: str) -> str:
    """``env_id`` itself if it is a plain registered-style gymnasium id, else a ``ValueError``.

    Accepts ``[namespace/]name-vN`` (``"CartPole-v1"``, ``"ALE/Pong-v5"``,
    ``"MinAtar/Breakout-v1"``) and nothing else. gymnasium reads ``"mod:Env-v0"`` as
    "import ``mod``, then make ``Env-v0``", so an id read from a checkpoint or typed by a
    user goes through here before it reaches ``gymnasium.make`` or ale-py: nothing named
    in a file is imported. (:func:`make_atari_env` and :func:`make_atari_vector_env` need
    no call: :func:`atari_game` accepts only the ALE ids gymnasium has registered.)
    """
    if not isinstance(env_id, str) or not _ENV_ID.fullmatch(env_id):
        raise ValueError(
            "env_id must be a gymnasium id [namespace/]name-vN of letters, digits, "
            f"'_', '-' and '.', like 'CartPole-v1' or 'ALE/Pong-v5'; got {env_id!r}"
        )
    return env_id


def _v5_ids() -> dict[str, str]:
    """``{"ALE/Pong-v5": "pong", ...}`` for every single-player game registered by ale-py."""
    ids = {}
    for game in roms.get_all_rom_ids():
        env_id = f"ALE/{game.title().replace('_', '')}-v5"
        if env_id in gym.registry:
            ids[env_id] = game
    return ids


def atari_game(env_id: str) -> str:
    """The ALE game of a gymnasium ``v5`` id: ``"ALE/Pong-v5" -> "pong"``.

    Raises ``ValueError`` naming the expected form (and the nearest id) for anything else.
    """
    ids = _v5_ids()
    if not isinstance(env_id, str) or env_id not in ids:
        close = difflib.get_close_matches(str(env_id), list(ids), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"env_id must be an ALE v5 id like 'ALE/Pong-v5' or 'ALE/Breakout-v5'; "
            f"got {env_id!r}{hint}"
        )
    return ids[env_id]


class FireReset(gym.Wrapper):
    """Press FIRE for one emulator frame after every real reset.

    Wraps the raw ALE env (``frameskip=1``), below ``AtariPreprocessing``, so the press
    comes before the no-ops, as in ale-py's vector env. Apply it only to games whose
    action set has FIRE (:func:`make_atari_env` checks).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if "FIRE" not in meanings:
            raise ValueError(f"FireReset needs a game with a FIRE action; got {meanings}")
        self._fire = meanings.index("FIRE")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.env.reset(seed=seed, options=options)
        obs, _, _, _, info = self.env.step(self._fire)
        return obs, info


class EpisodeFrameCap(gym.Wrapper):
    """Truncate the episode after ``max_frames`` emulator frames (``frame_skip`` per step).

    Frames are counted from the end of the reset, so the cap is exactly
    ``max_frames // frame_skip`` agent steps (27,000 for 108,000 frames), as in ale-py's
    vector env. ``truncated`` is not set on a step that also terminates.
    """

    def __init__(self, env: gym.Env, max_frames: int, frame_skip: int) -> None:
        super().__init__(env)
        self.max_frames, self.frame_skip = max_frames, frame_skip
        self.frames = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.frames = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames += self.frame_skip
        truncated = (truncated or self.frames >= self.max_frames) and not terminated
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for learning, not the game (Mnih et al. 2015).

    ``step`` returns ``terminated=True`` when the number of lives drops and some remain.
    The following ``reset()`` is soft: it returns the current observation and leaves the
    emulator alone, so training sees every life of a game. Any other ``reset`` (after a
    game over or truncation, or given a seed or options) resets the game.
    Outermost wrapper: the frame stack carries on across a lost life.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._lives = 0
        self._after_lost_life: tuple[Any, dict[str, Any]] | None = None

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        # a life lost, some left, game not over: the same test as ale-py's life_loss_info
        life_lost = 0 < lives < self._lives
        self._lives = lives
        game_over = terminated or truncated
        self._after_lost_life = (obs, info) if life_lost and not game_over else None
        terminated = terminated or life_lost
        return obs, reward, terminated, truncated and not terminated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self._after_lost_life is not None and seed is None and not options:
            obs, info = self._after_lost_life  # soft reset: the game goes on
            self._after_lost_life = None
            return obs, info
        obs, info = self.env.reset(seed=seed, options=options)
        self._lives = self.env.unwrapped.ale.lives()
        self._after_lost_life = None
        return obs, info


def make_atari_env(
    env_id: str = "ALE/Pong-v5",
    *,
    seed: int | None = None,
    train: bool = True,
    noop_max: int = NOOP_MAX,
    frame_skip: int = FRAME_SKIP,
    screen_size: int = SCREEN_SIZE,
    frame_stack: int = FRAME_STACK,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    fire_reset: bool = True,
    repeat_action_probability: float = 0.0,
    max_episode_frames: int = MAX_EPISODE_FRAMES,
) -> gym.Env:
    """One Atari env with the DQN preprocessing: observations ``(4, 84, 84) uint8``.

    Args:
        env_id: an ALE v5 id, e.g. ``"ALE/Pong-v5"`` or ``"ALE/Breakout-v5"``.
        seed: seeds ``env.action_space`` (for random actions). The emulator and the
            no-op draws are seeded by ``env.reset(seed=...)``, as always in gymnasium.
        train: ``True`` for the training preset (episodic life, clipped rewards),
            ``False`` for the evaluation protocol (full games, raw scores).
        The other arguments override one setting each; see :func:`atari_settings` and
        the module docstring for their meaning and source.

    The wrappers, innermost first: the raw ALE env (``frameskip=1``, minimal action
    set, no ALE frame cap), :class:`FireReset` (if FIRE exists and ``fire_reset``),
    gymnasium's ``AtariPreprocessing`` (no-ops, frame skip, max-pool, grayscale,
    resize), :class:`EpisodeFrameCap`, gymnasium's ``ClipReward`` (if clipping),
    ``FrameStackObservation`` (zero padding) and :class:`EpisodicLife` (if on).
    """
    atari_game(env_id)  # a clear error for an unknown id
    s = atari_settings(
        train=train, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
        frame_stack=frame_stack, terminal_on_life_loss=terminal_on_life_loss,
        clip_rewards=clip_rewards, fire_reset=fire_reset,
        repeat_action_probability=repeat_action_probability,
        max_episode_frames=max_episode_frames,
    )
    env: gym.Env = gym.make(
        env_id,
        frameskip=1,  # AtariPreprocessing does the frame skip (and the max-pool)
        repeat_action_probability=s.repeat_action_probability,
        full_action_space=False,
        max_num_frames_per_episode=None,  # EpisodeFrameCap counts frames like the vector env
        obs_type="grayscale",  # cheapest screen the raw env can produce
        disable_env_checker=True,
    )
    if s.fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    env = AtariPreprocessing(
        env, noop_max=s.noop_max, frame_skip=s.frame_skip, screen_size=s.screen_size,
        terminal_on_life_loss=False,  # EpisodicLife (outermost) keeps the game going instead
        grayscale_obs=True, scale_obs=False,
    )
    env = EpisodeFrameCap(env, s.max_episode_frames, s.frame_skip)
    if s.clip_rewards:
        env = ClipReward(env, -1.0, 1.0)
    env = FrameStackObservation(env, s.frame_stack, padding_type="zero")  # (4, 84, 84)
    if s.terminal_on_life_loss:
        env = EpisodicLife(env)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def make_atari_vector_env(
    env_id: str = "ALE/Pong-v5",
    num_envs: int = 8,
    *,
    seed: int | None = None,
    train: bool = True,
    noop_max: int = NOOP_MAX,
    frame_skip: int = FRAME_SKIP,
    screen_size: int = SCREEN_SIZE,
    frame_stack: int = FRAME_STACK,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    fire_reset: bool = True,
    repeat_action_probability: float = 0.0,
    max_episode_frames: int = MAX_EPISODE_FRAMES,
    num_threads: int = 0,
) -> AtariVectorEnv:
    """``num_envs`` Atari envs stepped in C++ threads, preprocessed as :func:`make_atari_env`.

    Returns ale-py's ``AtariVectorEnv``: observations ``(num_envs, 4, 84, 84) uint8``,
    rewards ``(num_envs,) int32``, ``terminated``/``truncated`` ``(num_envs,) bool``,
    info arrays ``lives``, ``frame_number``, ``episode_frame_number``, ``env_id``.
    ``env.reset(seed=s)`` seeds sub-environment ``i`` with ``s + i``; actions are an
    integer array ``(num_envs,)``. ``seed`` seeds ``env.action_space``. Autoreset is
    ``NEXT_STEP`` (see the module docstring). ``num_threads=0`` lets ale-py choose.
    """
    game = atari_game(env_id)
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1; got {num_envs!r}")
    s = atari_settings(
        train=train, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
        frame_stack=frame_stack, terminal_on_life_loss=terminal_on_life_loss,
        clip_rewards=clip_rewards, fire_reset=fire_reset,
        repeat_action_probability=repeat_action_probability,
        max_episode_frames=max_episode_frames,
    )
    env = AtariVectorEnv(
        game=game,
        num_envs=num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=s.max_episode_frames,
        repeat_action_probability=s.repeat_action_probability,
        full_action_space=False,
        img_height=s.screen_size,
        img_width=s.screen_size,
        grayscale=True,
        stack_num=s.frame_stack,
        frameskip=s.frame_skip,
        maxpool=s.frame_skip > 1,
        noop_max=s.noop_max,
        episodic_life=False,  # ale-py's version resets the whole game on a lost life
        life_loss_info=s.terminal_on_life_loss,  # terminated on a lost life, game goes on
        reward_clipping=s.clip_rewards,
        use_fire_reset=s.fire_reset,
    )
    if seed is not None:
        env.action_space.seed(seed)
    return env


def action_meanings(env: gym.Env | AtariVectorEnv) -> list[str]:
    """The names of the actions, by index: ``["NOOP", "FIRE", "RIGHT", ...]`` for Pong."""
    if isinstance(env, AtariVectorEnv):
        return [action.name for action in env.ale.get_action_set()]
    return list(env.unwrapped.get_action_meanings())


# --- any gymnasium environment (vector observations), for the training loop ---------


def is_atari(env_id: str) -> bool:
    """ALE ids (``ALE/Pong-v5``) train through :func:`make_atari_vector_env`."""
    return env_id.startswith("ALE/")


MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def is_minatar(env_id: str) -> bool:
    """MinAtar ids (``MinAtar/Breakout-v1``): Young and Tian's (2019) miniature Atari games."""
    return env_id.startswith("MinAtar/")


def register_minatar() -> None:
    """Register MinAtar's gymnasium ids (``MinAtar/<Game>-v1``: the minimal action set),
    or a one-line error saying how to install it."""
    try:
        import logging

        logging.disable(logging.WARNING)  # minatar.gym warns that seaborn is missing
        try:
            from minatar import gym as minatar_gym
        finally:
            logging.disable(logging.NOTSET)
    except ImportError:
        raise ValueError("MinAtar is not installed: pip install 'duel-tutorial[minatar]' "
                         "(or pip install minatar)") from None
    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar_gym.register_envs()


class ChannelsFirst(gym.ObservationWrapper):
    """MinAtar's ``(10, 10, C)`` bool grids as ``(C, 10, 10)``, channels first like every
    other image the package's networks take (a view: no copy, same dtype)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), dtype=env.observation_space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.moveaxis(observation, -1, 0)


def make_env(
    env_id: str,
    num_envs: int = 1,
    *,
    wrappers: Sequence[Callable[[gym.Env], gym.Wrapper]] | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in lockstep (``gymnasium.vector``, sync).

    MinAtar ids (``MinAtar/<Game>-v1``) need the ``minatar`` package; their ``(10, 10, C)``
    grids come channels first, ``(C, 10, 10)`` bool (:class:`ChannelsFirst`), with
    MinAtar's own defaults (sticky actions with probability 0.1, difficulty ramping).

    Autoreset is "same step": when an episode ends, ``step`` returns the first
    observation of the next episode, and the true last observation is in
    ``info["final_obs"]``. ``kwargs`` go to ``gymnasium.make``. An unknown id raises a
    one-line ``ValueError``; so does an action space that is not ``Discrete``.
    """
    check_env_id(env_id)  # no module import hidden in the id ("evilmod:CartPole-v1")
    check_not_legacy_atari(env_id)
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    if is_minatar(env_id):
        register_minatar()
        wrappers = [*(wrappers or ()), ChannelsFirst]
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                            wrappers=wrappers, **kwargs)
    except gym.error.UnregisteredEnv as err:
        reason = " ".join(str(err).split())
        raise ValueError(
            f"unknown environment id {env_id!r} ({reason}); expected a registered gymnasium id "
            "such as 'CartPole-v1' (list them: python -c 'import gymnasium; "
            "gymnasium.pprint_registry()')"
        ) from None
    except (gym.error.Error, ImportError) as err:  # deprecated id, missing extra (Box2D), ...
        reason = " ".join(str(err).split())
        raise ValueError(f"cannot make environment {env_id!r}: {reason}") from None
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        envs.close()
        raise ValueError(f"DQN needs a Discrete action space; {env_id} has "
                         f"{envs.single_action_space}")
    return envs


_LEGACY_ATARI = re.compile(r"^(?P<game>[A-Z][A-Za-z]*?)(?:NoFrameskip|Deterministic)?-v[04]$")


def check_not_legacy_atari(env_id: str) -> None:
    """A one-line error for gym's old Atari ids (``PongNoFrameskip-v4``), naming ale-py's.

    Their raw RGB frames are not what the networks here take; ``ALE/Pong-v5`` with the
    atari preset gives the standard DQN input. Unlike the default ``ALE/...-v5``, and like
    ``NoFrameskip-v4``, the preset's environment has no sticky actions.
    """
    match = _LEGACY_ATARI.match(env_id)
    if match is None:
        return
    import ale_py

    gym.register_envs(ale_py)
    new = f"ALE/{match['game']}-v5"
    if new in gym.registry:
        raise ValueError(
            f"{env_id!r} is gym's old Atari id; use --env {new} (it picks the atari preset: "
            "the DQN preprocessing with frame skip 4 and, as in NoFrameskip-v4, no sticky "
            "actions)")


# --- one step of a vector env, whatever its autoreset mode ----------------------------


def make_training_envs(env_id: str, num_envs: int, seed: int,
                       repeat_action_probability: float = 0.0
                       ) -> gym.vector.VectorEnv | AtariVectorEnv:
    """The vector env the training loop steps: for an ALE id ale-py's C++ vector env with
    the training preprocessing (:func:`make_atari_vector_env`, NEXT_STEP autoreset, and
    sticky actions if ``repeat_action_probability`` > 0), for any other id a gymnasium
    vector env (:func:`make_env`, SAME_STEP autoreset)."""
    if is_atari(env_id):
        return make_atari_vector_env(env_id, num_envs, seed=seed,
                                     repeat_action_probability=repeat_action_probability)
    if repeat_action_probability:
        raise ValueError(f"sticky actions (repeat_action_probability) are an Atari "
                         f"setting; got {repeat_action_probability} for {env_id!r}")
    return make_env(env_id, num_envs)


class Transition(NamedTuple):
    """One vector step as replay stores it: ``n`` rows, one per sub-environment.

    ``next_obs[i]`` is the real observation that followed ``obs[i]`` (the last one of an
    episode, not the first of the next). ``terminated[i]``: no bootstrapping from
    ``next_obs[i]`` (in training Atari, a lost life counts). ``valid[i]`` is false where
    row ``i`` is no transition at all: the step into a new game of a NEXT_STEP vector env,
    which ignored its action.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray


class EnvStepper:
    """Steps a vector env and hands back transitions in one form, whatever its autoreset.

    - **SAME_STEP** (gymnasium's vector envs from :func:`make_env`): the step that ends an
      episode returns the next episode's first observation; the true last one is in
      ``info["final_obs"]``, and goes into the transition.
    - **NEXT_STEP** (ale-py's vector env): the step *after* the end returns the new game's
      first observation and ignores its action; that row is marked not ``valid``.
    - **Lost lives** (training Atari): ``terminated`` on a lost life, so the target does not
      bootstrap across a death, but the game goes on; an episode, for logging and for the
      reset, ends only at game over (no lives left) or at the frame cap (``truncated``).

    ``step`` returns ``(transition, obs, ended)``: the transition to store, the observations
    to act on next, and which sub-environments finished an episode with this step.
    """

    def __init__(self, envs: gym.vector.VectorEnv | AtariVectorEnv) -> None:
        mode = envs.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
            raise ValueError(f"the training loop needs a vector env with SAME_STEP or NEXT_STEP "
                             f"autoreset; got {mode!r}")
        self.envs, self.next_step_reset = envs, mode == AutoresetMode.NEXT_STEP
        self.num_envs = int(envs.num_envs)
        self.obs_shape = tuple(envs.single_observation_space.shape)
        self.obs_dtype = envs.single_observation_space.dtype
        self.n_actions = int(envs.single_action_space.n)
        self.obs: np.ndarray | None = None
        self.resetting = np.zeros(self.num_envs, dtype=bool)  # NEXT_STEP: resets on this step

    def reset(self, seed: int | None = None) -> np.ndarray:
        """A fresh episode in every sub-environment; returns the observations."""
        self.obs, _ = self.envs.reset(seed=seed)
        self.resetting[:] = False
        return self.obs

    def step(self, actions: np.ndarray) -> tuple[Transition, np.ndarray, np.ndarray]:
        if self.obs is None:
            raise ValueError("call reset() before step()")
        obs = self.obs
        next_obs, reward, terminated, truncated, info = self.envs.step(actions)
        if self.next_step_reset:
            valid = ~self.resetting  # the step into a new game is not a transition
            lives = info.get("lives")  # a lost life terminates; only a game over resets
            ended = truncated | (terminated & (lives == 0) if lives is not None else terminated)
            ended &= valid
            self.resetting = ended
            real_next_obs = next_obs
        else:
            valid = np.ones(self.num_envs, dtype=bool)
            ended = terminated | truncated
            real_next_obs = next_obs
            if ended.any():  # the true last observations, not the next episodes' first
                real_next_obs = next_obs.copy()
                for i in np.flatnonzero(ended):
                    real_next_obs[i] = info["final_obs"][i]
        self.obs = next_obs
        return (Transition(obs, actions, reward, real_next_obs, terminated, truncated, valid),
                next_obs, ended)

    def close(self) -> None:
        self.envs.close()
