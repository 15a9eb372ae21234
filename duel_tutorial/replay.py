"""Experience replay (Lin, 1992; Mnih et al., 2015): a ring buffer of transitions.

:class:`ReplayBuffer` keeps the last ``capacity`` transitions
``(obs, action, reward, next_obs, terminated, truncated)`` in preallocated numpy arrays
and samples minibatches uniformly at random, with replacement (as SB3 and CleanRL do).

- **O(1) add and sample.** Adding writes into the next slot of each array (overwriting
  the oldest transition once full); sampling draws ``batch_size`` random indices. Nothing
  is ever appended to a list or copied as a whole.
- **One dtype per field.** Observations keep the dtype they arrive in (``uint8`` Atari
  frames stay ``uint8``: 4x less memory than float32; the network scales them), actions
  are ``int64`` (what ``torch.gather`` needs), rewards ``float32``, and ``terminated`` and
  ``truncated`` are two separate ``bool`` arrays: the TD target must bootstrap through a
  time-limit truncation but not through a true terminal state (see ``targets.py``).
- **Seeded.** Sampling uses the buffer's own ``numpy.random.Generator``; the same seed
  and the same adds give the same minibatches.

Memory: ``capacity * (2 * obs_bytes + 8 + 4 + 1 + 1)`` bytes, where ``obs_bytes`` is one
observation's size (``next_obs`` is stored beside ``obs``, which keeps vector-env
autoreset and truncation simple at the price of 2x observation memory). CartPole
(4 float32 = 16 bytes), 100,000 transitions: 4.6 MB. Atari (4x84x84 uint8 = 28,224
bytes), 100,000 transitions: 5.6 GB. :attr:`ReplayBuffer.nbytes` gives the exact figure.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """A minibatch of ``B`` transitions, as tensors on the requested device.

    ``obs, next_obs: (B, *obs_shape)`` in the stored dtype; ``action: (B,)`` int64;
    ``reward: (B,)`` float32; ``terminated, truncated: (B,)`` bool.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


class NStepBatch(NamedTuple):
    """A minibatch of ``B`` n-step transitions (:meth:`FrameReplayBuffer.sample` with
    ``n_step > 1``): the fields of :class:`Batch`, where ``reward`` is the discounted sum
    of ``m <= n`` rewards, ``r_t + γ r_{t+1} + ... + γ^{m-1} r_{t+m-1}``, ``next_obs`` the
    observation ``m`` steps on and ``terminated, truncated`` the flags of the last step
    summed, and ``discount: (B,)`` float32 ``γ^m``, the factor of the bootstrap (``m < n``
    where the game or a life ended first)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    discount: torch.Tensor


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, stored as preallocated numpy arrays.

    Args:
        capacity: the most transitions kept; the oldest is overwritten first.
        obs_shape: shape of one observation, e.g. ``(4,)`` for CartPole, ``(4, 84, 84)``
            for stacked Atari frames.
        obs_dtype: dtype of observations (``np.float32``, ``np.uint8``, ...).
        seed: seed of the sampling generator (or pass ``rng``).
        rng: a ``numpy.random.Generator`` to sample with, instead of ``seed``.
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        *,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not isinstance(capacity, int | np.integer) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be a positive int; got {capacity!r}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.obs = np.zeros((self.capacity, *self.obs_shape), dtype=self.obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.action = np.zeros(self.capacity, dtype=np.int64)
        self.reward = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=bool)
        self.truncated = np.zeros(self.capacity, dtype=bool)
        self.pos = 0  # next slot to write
        self.size = 0  # slots filled so far, <= capacity

    def __len__(self) -> int:
        return self.size

    def start(self, obs: np.ndarray) -> None:
        """Episodes begin with ``obs`` (after a reset of the environments). Nothing to do
        here, since every transition stores its own ``obs``; :class:`FrameReplayBuffer`
        needs it, and the two buffers share one interface."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays (independent of how full the buffer is)."""
        return sum(getattr(self, name).nbytes for name in self.FIELDS)

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray | int,
        reward: np.ndarray | float,
        next_obs: np.ndarray,
        terminated: np.ndarray | bool,
        truncated: np.ndarray | bool,
        valid: np.ndarray | None = None,
    ) -> None:
        """Store one transition, or ``n`` at once (one per vector env).

        Shapes: ``obs, next_obs: obs_shape`` or ``(n, *obs_shape)``; ``action, reward,
        terminated, truncated``: scalars or ``(n,)``. ``next_obs`` must be the real next
        observation (a vector env's ``final_obs`` after an episode ends, not the reset one).
        ``valid`` (``(n,)`` bool, default all): the rows that are transitions; the others
        are skipped (the same signature as :meth:`FrameReplayBuffer.add`, so that
        ``buffer.add(*transition)`` stores an :class:`~duel_tutorial.envs.Transition`).
        """
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        if obs.shape == self.obs_shape:  # a single transition: add a leading axis of 1
            obs, next_obs = obs[None], next_obs[None]
        n = obs.shape[0] if obs.ndim == len(self.obs_shape) + 1 else -1
        if n < 1 or obs.shape[1:] != self.obs_shape or next_obs.shape != obs.shape:
            raise ValueError(
                f"obs and next_obs must have shape {self.obs_shape} or (n, *{self.obs_shape}); "
                f"got obs {obs.shape} and next_obs {next_obs.shape}"
            )
        if valid is not None and not np.all(valid):
            keep = np.flatnonzero(np.broadcast_to(np.asarray(valid, dtype=bool), (n,)))
            if keep.size:
                self.add(*(np.broadcast_to(np.asarray(x), (n, *np.shape(x)[1:]))[keep]
                           for x in (obs, action, reward, next_obs, terminated, truncated)))
            return
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions at once to a buffer of capacity "
                             f"{self.capacity}")
        if self.pos + n <= self.capacity:  # the common case: one contiguous slice
            idx: slice | np.ndarray = slice(self.pos, self.pos + n)
        else:  # wrap around the end of the ring
            idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.action[idx] = action
        self.reward[idx] = reward
        self.terminated[idx] = terminated
        self.truncated[idx] = truncated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_indices(self, batch_size: int, n_batches: int = 1, *,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """``n_batches * batch_size`` slot indices drawn uniformly, with replacement, by
        ``rng`` (default: the buffer's own generator)."""
        if batch_size > self.size:
            raise ValueError(
                f"cannot sample {batch_size} transitions: the buffer holds {self.size} "
                "(add more transitions first, or lower batch_size)"
            )
        if batch_size < 1 or n_batches < 1:
            raise ValueError(f"batch_size and n_batches must be positive ints; got "
                             f"{batch_size!r} and {n_batches!r}")
        return (self.rng if rng is None else rng).integers(0, self.size,
                                                           size=n_batches * batch_size)

    def sample(
        self, batch_size: int, device: torch.device | str | None = None, *, n_batches: int = 1,
        n_step: int = 1, gamma: float | None = None, rng: np.random.Generator | None = None,
    ) -> Batch:
        """A uniformly sampled :class:`Batch` of ``batch_size`` transitions on ``device``.

        ``rng`` draws the indices instead of the buffer's own generator, so that a look at
        the replay (a diagnostic) leaves the training's sampling as it was.

        ``n_batches > 1`` draws that many independent minibatches at once, stacked along
        the first axis (``n_batches * batch_size`` rows; minibatch ``k`` is rows
        ``k * batch_size`` to ``(k + 1) * batch_size``): one numpy call instead of many.
        ``n_step`` must be 1: whole transitions do not say which one follows which (the
        frame replay, which keeps each environment's steps in order, has n-step returns).
        """
        if n_step != 1:
            raise ValueError(f"ReplayBuffer samples one-step transitions only (n-step returns "
                             f"need FrameReplayBuffer, for ALE ids); got n_step={n_step!r}")
        idx = self.sample_indices(batch_size, n_batches, rng=rng)
        # arr[idx] is a fresh contiguous array: torch.from_numpy wraps it without a copy
        tensors = (torch.from_numpy(getattr(self, name)[idx]) for name in self.FIELDS)
        if device is None or torch.device(device).type == "cpu":
            return Batch(*tensors)
        return Batch(*(t.to(device, non_blocking=True) for t in tensors))

    # --- checkpointing -------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled part of every array, oldest first, for a checkpoint."""
        if self.size < self.capacity:
            order: slice | np.ndarray = slice(0, self.size)
        else:  # full: the oldest transition sits at self.pos
            order = (self.pos + np.arange(self.capacity)) % self.capacity
        return {name: getattr(self, name)[order] for name in self.FIELDS}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Refill the buffer from :meth:`state_dict` (keeps the newest ``capacity`` rows)."""
        missing = [name for name in self.FIELDS if name not in state]
        if missing:
            raise ValueError(f"replay state must have fields {self.FIELDS}; missing {missing}")
        n = len(state["obs"])
        if any(len(state[name]) != n for name in self.FIELDS):
            raise ValueError("replay state fields have different lengths: "
                             f"{ {name: len(state[name]) for name in self.FIELDS} }")
        if tuple(state["obs"].shape[1:]) != self.obs_shape:
            raise ValueError(f"replay state has observations of shape "
                             f"{tuple(state['obs'].shape[1:])}; this buffer stores "
                             f"{self.obs_shape}")
        keep = min(n, self.capacity)
        for name in self.FIELDS:
            getattr(self, name)[:keep] = np.asarray(state[name])[n - keep:]
        self.size, self.pos = keep, keep % self.capacity


class FrameReplayBuffer:
    """Replay for stacked Atari frames that stores every frame once.

    An Atari observation is a stack of the last ``stack`` frames ``(4, 84, 84)``, and
    consecutive observations share 3 of them; :class:`ReplayBuffer` would keep each frame
    8 times (4 in ``obs``, 4 in ``next_obs``). This buffer keeps, per environment, a
    ring of single frames ``(84, 84) uint8`` and rebuilds the stacks when it samples, as
    DQN's original code and Dopamine do.

    **Layout.** ``num_envs`` streams (one per vector sub-environment), all written in
    lockstep, each a ring of ``capacity // num_envs`` slots. Slot ``t`` of a stream holds
    observation ``o_t``'s newest frame, ``first[t]`` (``o_t`` begins a game: the frames
    before it in its stack are zeros), and the step taken from it: ``action[t]``,
    ``reward[t]``, ``terminated[t]``, ``truncated[t]``, and ``valid[t]``, false when
    ``o_t -> o_{t+1}`` is not a transition (``o_{t+1}`` began a new game, or ``o_t`` is
    the newest observation). A sampled transition ``t`` is the stacks ending at slots
    ``t`` and ``t + 1``, with the frames before a game's first zeroed.

    **Memory**: ``capacity * (84 * 84 + 8 + 4 + 4)`` bytes, 7.07 GB for 1,000,000
    transitions (:class:`ReplayBuffer`: 56.5 GB); :attr:`nbytes` gives the figure. The
    frames, actions, rewards and flags live on ``device``: on a GPU the whole buffer
    stays in GPU memory and sampling is a gather there; only the small ``first`` and
    ``valid`` flags, which choose the indices, also live on the host.

    Usage, with a vector env in ``NEXT_STEP`` autoreset mode (``make_atari_vector_env``)
    stepped by :class:`~duel_tutorial.envs.EnvStepper`::

        obs = stepper.reset(seed=0)
        buffer.start(obs)         # new games begin in every stream
        transition, obs, ended = stepper.step(actions)
        buffer.add(*transition)   # obs, action, reward, next_obs, terminated, truncated, valid

    where ``valid[i]`` false says that ``next_obs[i]`` is the first observation of a new
    game (sub-environment ``i`` ended its game on the previous step and was reset by this
    one, which ignored its action).
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int = 1,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
        *,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        for name, value in (("capacity", capacity), ("num_envs", num_envs), ("stack", stack)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        slots = capacity // num_envs
        if slots < stack + 2:
            raise ValueError(f"capacity must hold at least {stack + 2} slots per environment "
                             f"({(stack + 2) * num_envs} for {num_envs} envs); got {capacity}")
        self.capacity, self.num_envs, self.slots = slots * num_envs, int(num_envs), slots
        self.frame_shape, self.stack = tuple(int(d) for d in frame_shape), int(stack)
        self.device = torch.device(device)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        shape = (self.num_envs, slots)
        self.frames = torch.zeros((*shape, *self.frame_shape), dtype=torch.uint8,
                                  device=self.device)
        self.action = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.reward = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.first = np.zeros(shape, dtype=bool)  # host: they choose the sampled indices
        self.valid = np.zeros(shape, dtype=bool)
        self.ended = np.zeros(shape, dtype=bool)  # host copy of terminated | truncated
        self.written = 0  # slots written per stream since the start (not wrapped)
        self._sampleable = 0  # valid slots in the window: len(self), kept up to date

    FIELDS = ("frames", "action", "reward", "terminated", "truncated", "first", "valid")

    def __len__(self) -> int:
        """Transitions that can be sampled (stored, complete, whole stacks in the ring).

        O(1): a counter that each write updates by the one slot entering the window and
        the one leaving it, instead of a scan of the validity mask (which costs
        O(capacity): 3.8 ms at a million transitions, on every sample)."""
        return self._sampleable

    def _count_window(self) -> int:
        """The same count by a scan of the window: O(capacity), for a restored state."""
        lo, hi = self._window()
        return int(self.valid[:, np.arange(lo, hi + 1) % self.slots].sum()) if hi >= lo else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated storage (host and device)."""
        per_slot = (int(np.prod(self.frame_shape)) + self.action.element_size()
                    + self.reward.element_size() + 2 * self.terminated.element_size() + 2)
        return self.num_envs * self.slots * per_slot

    def _window(self) -> tuple[int, int]:
        """First and last sampleable slot (unwrapped): the stack of ``t`` needs slots
        ``t - stack + 1`` (not yet overwritten) to ``t + 1`` (already written)."""
        return max(0, self.written - self.slots + self.stack - 1), self.written - 2

    def _write_frames(self, obs: np.ndarray | torch.Tensor, first: np.ndarray) -> None:
        obs = torch.as_tensor(obs)
        expected = (self.num_envs, self.stack, *self.frame_shape)
        if tuple(obs.shape) != expected or obs.dtype != torch.uint8:
            raise ValueError(f"observations must be uint8 of shape {expected}; got "
                             f"{str(obs.dtype).removeprefix('torch.')} {tuple(obs.shape)}")
        slot = self.written % self.slots
        self.frames[:, slot] = obs[:, -1].to(self.device, non_blocking=True)  # newest frame
        self.first[:, slot] = first
        self.valid[:, slot] = False  # no step taken from it yet
        lo_before = self._window()[0]
        self.written += 1
        lo, hi = self._window()
        for t in range(lo_before, lo):  # slots whose stacks now reach overwritten frames
            self._sampleable -= int(self.valid[:, t % self.slots].sum())
        if hi >= lo:  # the slot a step was last taken from can now be sampled
            self._sampleable += int(self.valid[:, hi % self.slots].sum())

    def start(self, obs: np.ndarray | torch.Tensor) -> None:
        """Begin new games in every stream with the reset observations ``(N, 4, 84, 84)``:
        call it after every ``reset`` of the environments (a resumed run resets them too)."""
        self._write_frames(obs, np.ones(self.num_envs, dtype=bool))

    def add(
        self,
        obs: np.ndarray | torch.Tensor,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray | torch.Tensor,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> None:
        """Record one vector step, with the signature of :meth:`ReplayBuffer.add`: what
        was done from ``obs`` and what came back. All arguments have a leading axis of
        ``num_envs``. ``valid[i]`` false (default: all true) says that ``next_obs[i]`` is
        the first observation of a new game and row ``i`` no transition (NEXT_STEP
        autoreset: the step after a game's end resets it and ignores its action).

        ``obs`` is not read: it is the previous ``next_obs`` (or what :meth:`start` was
        given), whose frames are already stored.
        """
        if self.written == 0:
            raise ValueError("call start(obs) with the reset observations before add()")
        slot = (self.written - 1) % self.slots  # the observations the actions were taken in
        new_game = (np.zeros(self.num_envs, dtype=bool) if valid is None
                    else ~np.asarray(valid, dtype=bool))
        self.action[:, slot] = torch.as_tensor(np.asarray(action, dtype=np.int64)).to(self.device)
        self.reward[:, slot] = torch.as_tensor(np.asarray(reward, dtype=np.float32)).to(
            self.device)
        self.terminated[:, slot] = torch.as_tensor(np.asarray(terminated, dtype=bool)).to(
            self.device)
        self.truncated[:, slot] = torch.as_tensor(np.asarray(truncated, dtype=bool)).to(
            self.device)
        self.valid[:, slot] = ~new_game  # the step into a new game is not a transition
        self.ended[:, slot] = np.asarray(terminated, dtype=bool) | np.asarray(truncated,
                                                                              dtype=bool)
        self._write_frames(next_obs, new_game)

    def sample_indices(self, batch_size: int, n_batches: int = 1, *,
                       rng: np.random.Generator | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``(stream, slot)`` of ``n_batches * batch_size`` transitions drawn uniformly
        (with replacement) among the valid ones by ``rng`` (default: the buffer's own
        generator); ``slot`` is unwrapped."""
        if batch_size < 1 or n_batches < 1:
            raise ValueError(f"batch_size and n_batches must be positive ints; got "
                             f"{batch_size!r} and {n_batches!r}")
        stored = len(self)
        if batch_size > stored:
            raise ValueError(f"cannot sample {batch_size} transitions: the buffer holds "
                             f"{stored} (add more transitions first, or lower batch_size)")
        lo, hi = self._window()
        n = n_batches * batch_size
        stream = np.empty(n, dtype=np.int64)
        slot = np.empty(n, dtype=np.int64)
        todo = np.arange(n)
        rng = self.rng if rng is None else rng
        while todo.size:  # rejection: invalid slots are about one per game
            s = rng.integers(0, self.num_envs, size=todo.size)
            t = rng.integers(lo, hi + 1, size=todo.size)
            ok = self.valid[s, t % self.slots]
            stream[todo[ok]], slot[todo[ok]] = s[ok], t[ok]
            todo = todo[~ok]
        return stream, slot

    def sample(
        self, batch_size: int, device: torch.device | str | None = None, *, n_batches: int = 1,
        n_step: int = 1, gamma: float | None = None, rng: np.random.Generator | None = None,
    ) -> Batch | NStepBatch:
        """A uniformly sampled :class:`Batch`: ``obs, next_obs (B, 4, 84, 84) uint8``.

        ``n_batches > 1`` stacks that many independent minibatches, as
        :meth:`ReplayBuffer.sample`. ``n_step > 1`` (with the discount ``gamma``) returns
        an :class:`NStepBatch`: from a sampled step ``t``, the rewards of
        steps ``t .. t + m - 1`` of the same stream, where ``m <= n_step`` stops after a
        step that terminated or truncated and before a step not yet taken. ``rng`` as in
        :meth:`ReplayBuffer.sample`.
        """
        if isinstance(n_step, bool) or not isinstance(n_step, int) or n_step < 1:
            raise ValueError(f"n_step must be a positive int; got {n_step!r}")
        stream, slot = self.sample_indices(batch_size, n_batches, rng=rng)
        if n_step > 1:
            if gamma is None or not 0.0 <= gamma <= 1.0:
                raise ValueError(f"n-step sampling needs gamma in [0, 1]; got {gamma!r}")
            return self._sample_n_step(stream, slot, n_step, gamma, device)
        k = self.stack
        window = slot[:, None] + np.arange(-k + 1, 2)  # (B, k + 1): o_{t-k+1} .. o_{t+1}
        first = self.first[stream[:, None], window % self.slots]
        # frame j of the stack ending at e is kept unless a game began after it, at or
        # before e: keep[:, j] = not any(first[:, j+1 .. e])
        began_after = np.flip(np.cumsum(np.flip(first, 1), 1), 1)  # sum of first[:, j:]
        keep_obs = began_after[:, 1:k + 1] - began_after[:, k:k + 1] == 0  # (B, k) ends at t
        keep_obs[:, -1] = True
        keep_next = began_after[:, 2:] == 0  # (B, k - 1) ends at t + 1 (not a new game)
        keep_next = np.concatenate([keep_next, np.ones((len(slot), 1), dtype=bool)], 1)
        dev = self.device
        s = torch.from_numpy(stream).to(dev)
        w = torch.from_numpy(window % self.slots).to(dev)
        frames = self.frames[s[:, None], w]  # (B, k + 1, 84, 84)
        mask = torch.from_numpy(np.stack([keep_obs, keep_next])).to(dev)  # (2, B, k)
        obs = frames[:, :k] * mask[0, :, :, None, None]
        next_obs = frames[:, 1:] * mask[1, :, :, None, None]
        t = w[:, k - 1]
        batch = Batch(obs, self.action[s, t], self.reward[s, t], next_obs,
                      self.terminated[s, t], self.truncated[s, t])
        if device is None or torch.device(device) == dev:
            return batch
        return Batch(*(x.to(device, non_blocking=True) for x in batch))

    def _stacks(self, stream: np.ndarray, end: np.ndarray) -> torch.Tensor:
        """The observations ``(B, stack, 84, 84)`` whose newest frames are at slots ``end``
        (unwrapped) of ``stream``, with the frames before a game's first zeroed."""
        k = self.stack
        window = end[:, None] + np.arange(-k + 1, 1)  # (B, k)
        first = self.first[stream[:, None], window % self.slots]
        # frame j is kept unless a game began after it, at or before the end
        keep = np.zeros_like(first)
        keep[:, -1] = True
        keep[:, :-1] = np.flip(np.cumsum(np.flip(first[:, 1:], 1), 1), 1) == 0
        s = torch.from_numpy(stream).to(self.device)
        w = torch.from_numpy(window % self.slots).to(self.device)
        mask = torch.from_numpy(keep).to(self.device)
        return self.frames[s[:, None], w] * mask[:, :, None, None]

    def _sample_n_step(self, stream: np.ndarray, slot: np.ndarray, n: int, gamma: float,
                       device: torch.device | str | None) -> NStepBatch:
        """n-step transitions from the sampled steps ``(stream, slot)``: which steps to sum
        is decided on the host (``valid``, ``ended``), so a GPU buffer never waits."""
        steps = slot[:, None] + np.arange(n)  # (B, n): t .. t + n - 1
        last_taken = self.written - 2  # the newest slot a step was taken from
        rows, cols = stream[:, None], steps % self.slots
        taken = self.valid[rows, cols] & (steps <= last_taken)
        ended_before = np.cumsum(self.ended[rows, cols], 1) - self.ended[rows, cols] > 0
        summed = np.cumprod(taken & ~ended_before, 1).astype(bool)  # a prefix of each row
        m = summed.sum(1)  # >= 1: step t itself was sampled as valid
        dev = self.device
        s = torch.from_numpy(stream).to(dev)
        w = torch.from_numpy(cols).to(dev)
        weights = torch.from_numpy(summed * gamma ** np.arange(n, dtype=np.float64)).to(
            dev, torch.float32)
        reward = (self.reward[s[:, None], w] * weights).sum(1)  # Σ_{k<m} γ^k r_{t+k}
        last = torch.from_numpy((slot + m - 1) % self.slots).to(dev)
        t = torch.from_numpy(slot % self.slots).to(dev)
        discount = torch.from_numpy((gamma ** m).astype(np.float32)).to(dev)
        batch = NStepBatch(self._stacks(stream, slot), self.action[s, t], reward,
                           self._stacks(stream, slot + m), self.terminated[s, last],
                           self.truncated[s, last], discount)
        if device is None or torch.device(device) == dev:
            return batch
        return NStepBatch(*(x.to(device, non_blocking=True) for x in batch))

    # --- checkpointing -------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array as numpy (the rings as they are) and the write counter."""
        out = {name: (v.cpu().numpy() if isinstance(v := getattr(self, name), torch.Tensor)
                      else v.copy()) for name in self.FIELDS}
        out["written"] = np.array([self.written], dtype=np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict` into a buffer of the same shape."""
        missing = [name for name in (*self.FIELDS, "written") if name not in state]
        if missing:
            raise ValueError(f"frame replay state must have fields {self.FIELDS} and "
                             f"'written'; missing {missing}")
        if tuple(state["frames"].shape) != tuple(self.frames.shape):
            raise ValueError(f"frame replay state holds frames of shape "
                             f"{tuple(state['frames'].shape)}; this buffer stores "
                             f"{tuple(self.frames.shape)}")
        for name in self.FIELDS:
            current = getattr(self, name)
            if isinstance(current, torch.Tensor):
                current.copy_(torch.as_tensor(np.asarray(state[name])))
            else:
                current[...] = state[name]
        self.written = int(np.asarray(state["written"]).reshape(-1)[0])
        self.ended = (self.terminated | self.truncated).cpu().numpy()
        self._sampleable = self._count_window()
