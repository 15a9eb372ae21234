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
    ) -> None:
        """Store one transition, or ``n`` at once (one per vector env).

        Shapes: ``obs, next_obs: obs_shape`` or ``(n, *obs_shape)``; ``action, reward,
        terminated, truncated``: scalars or ``(n,)``. ``next_obs`` must be the real next
        observation (a vector env's ``final_obs`` after an episode ends, not the reset one).
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

    def sample_indices(self, batch_size: int, n_batches: int = 1) -> np.ndarray:
        """``n_batches * batch_size`` slot indices drawn uniformly, with replacement."""
        if batch_size > self.size:
            raise ValueError(
                f"cannot sample {batch_size} transitions: the buffer holds {self.size} "
                "(add more transitions first, or lower batch_size)"
            )
        if batch_size < 1 or n_batches < 1:
            raise ValueError(f"batch_size and n_batches must be positive ints; got "
                             f"{batch_size!r} and {n_batches!r}")
        return self.rng.integers(0, self.size, size=n_batches * batch_size)

    def sample(
        self, batch_size: int, device: torch.device | str | None = None, *, n_batches: int = 1
    ) -> Batch:
        """A uniformly sampled :class:`Batch` of ``batch_size`` transitions on ``device``.

        ``n_batches > 1`` draws that many independent minibatches at once, stacked along
        the first axis (``n_batches * batch_size`` rows; minibatch ``k`` is rows
        ``k * batch_size`` to ``(k + 1) * batch_size``): one numpy call instead of many.
        """
        idx = self.sample_indices(batch_size, n_batches)
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
