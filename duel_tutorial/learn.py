"""Learning from replay: a training phase of minibatch updates, and the loss it reports.

:func:`train_phase` is step 4 of the training loop (:mod:`duel_tutorial.train`):
``config.gradient_steps`` updates, each :func:`~duel_tutorial.targets.dqn_loss` on a
fresh minibatch, backward, gradient-norm clipping and an Adam step. :class:`LossMeter`
keeps the sum of the losses on the device and reads it back only when the loop logs, so
the loop does not wait for every update to finish before it steps the environments.

Two levers make the update cheaper without changing the algorithm
(``DQNConfig.update_precision`` and ``compile_update``; acting always stays float32):

- **bfloat16** (:func:`resolve_precision`): the forward passes of the update (the target
  network's and the online network's, on s and s') run under
  ``torch.autocast(dtype=torch.bfloat16)`` and, for convolutional networks, in
  ``channels_last`` memory; the weights, their gradients, the optimizer state, the TD
  target and the loss stay float32. On CPUs with AMX or AVX512_BF16, oneDNN runs the
  bf16 convolutions and matrix products on them; on other CPUs bf16 is emulated and
  slower, so ``"auto"`` picks it only where it is fast (and on GPUs only where bf16 is in
  hardware).
- **torch.compile** (:class:`UpdateLoss`): the loss (online forwards, Double DQN target,
  TD target, loss) and its backward, compiled once per session, at the first update of
  each start or ``--resume`` (seconds to minutes on a CPU); the target network's forward,
  clipping and Adam stay eager. Under an ``ATEN_CPU_CAPABILITY`` override (the book's
  reference numerics set one) it compiles without inductor's on-disk graph cache
  (:func:`compile_options`).
"""

from __future__ import annotations

import functools
import math
import os
import typing
from pathlib import Path

import torch
from torch import nn

from duel_tutorial.config import DQNConfig, Precision
from duel_tutorial.replay import Batch, FrameReplayBuffer, NStepBatch, ReplayBuffer
from duel_tutorial.targets import dqn_loss

PRECISIONS = typing.get_args(Precision)  # ("fp32", "bf16", "auto")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix hardware (AMX-BF16 or AVX512_BF16) that
    oneDNN may use (``ONEDNN_MAX_CPU_ISA`` capped below AVX-512, as under the book's
    reference numerics, rules it out)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if cap not in ("ALL", "") and not cap.startswith(("AVX512", "AVX10")):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: do not guess
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` is bf16 on a GPU with bf16 hardware (Ampere and
    later; not a T4, where torch would emulate it) and on a CPU with bf16 hardware
    (:func:`cpu_has_fast_bf16`), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"update_precision must be one of {PRECISIONS}; got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def _loss(online: nn.Module, target_net: nn.Module, batch: Batch | NStepBatch,
          next_q_target: torch.Tensor,
          *, config: DQNConfig, bf16: bool, device_type: str) -> torch.Tensor:
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        # L = loss(Q(s, a), y), y = r + γ (1 - terminated) Q_target(s', a*)
        return dqn_loss(online, target_net, batch, config.gamma, double=config.double_dqn,
                        loss=config.loss, next_q_target=next_q_target)


def compile_options(device: torch.device) -> dict[str, bool]:
    """Inductor options for compiling the update on ``device``: no FX graph cache on a CPU
    whose ATen capability is overridden (``ATEN_CPU_CAPABILITY``).

    In torch 2.13 that cache does not key on the capability, which sets the vector width
    of inductor's C++ loops. A graph compiled under ``avx2`` (8 floats a step), read back
    in a process without the override, is built with AVX-512 vectors (16 floats) and
    writes past its buffers: glibc aborted (``corrupted size vs. prev_size``) a native
    unit-test run that followed ``make unit``, which runs under the reference numerics.
    With the cache off under an override, such a process neither reads a graph nor
    writes one.
    """
    if device.type == "cpu" and os.environ.get("ATEN_CPU_CAPABILITY"):
        return {"fx_graph_cache": False}
    return {}


class UpdateLoss:
    """The loss of one minibatch, ``update_loss(online, target_net, batch, next_q_target)``,
    in ``precision`` (``"fp32"`` or ``"bf16"``), compiled with ``torch.compile`` if asked."""

    def __init__(self, config: DQNConfig, device: torch.device, precision: str = "fp32",
                 compile: bool = False) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16' (resolve 'auto' first); "
                             f"got {precision!r}")
        self.bf16, self.device_type = precision == "bf16", device.type
        fn = functools.partial(_loss, config=config, bf16=self.bf16, device_type=device.type)
        self.fn = (torch.compile(fn, dynamic=False, options=compile_options(device))
                   if compile else fn)

    @torch.no_grad()
    def next_q_target(self, target_net: nn.Module, next_obs: torch.Tensor) -> torch.Tensor:
        """``Q_target(s', .)`` in float32, computed in this update's precision."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            return target_net(next_obs).float()

    def __call__(self, online: nn.Module, target_net: nn.Module, batch: Batch | NStepBatch,
                 next_q_target: torch.Tensor) -> torch.Tensor:
        return self.fn(online, target_net, batch, next_q_target)


def channels_last(batch: Batch | NStepBatch) -> Batch | NStepBatch:
    """Frame stacks ``(B, C, H, W)`` in channels_last memory (the same values)."""
    if batch.obs.dim() != 4:
        return batch
    return batch._replace(obs=batch.obs.contiguous(memory_format=torch.channels_last),
                          next_obs=batch.next_obs.contiguous(memory_format=torch.channels_last))


def train_phase(
    online: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer | FrameReplayBuffer,
    config: DQNConfig,
    device: torch.device,
    loss_fn: UpdateLoss | None = None,
) -> torch.Tensor:
    """One training phase: ``config.gradient_steps`` gradient steps, each on a fresh
    minibatch of ``config.batch_size`` transitions. Returns the summed loss (a tensor on
    ``device``: reading it would force a host sync, so the caller does that rarely).

    Each step is :func:`~duel_tutorial.targets.dqn_loss`, backward, gradient-norm clipping
    and an Adam step. One shortcut: the target network does not change during a phase (it
    is synced between phases), so the phase samples all its minibatches at once and
    computes their ``Q_target(s', .)`` in one forward pass instead of one per step. The
    minibatches are still uniform and independent, and the targets the same numbers (up
    to floating-point rounding); what is saved is one small forward pass per gradient
    step, which matters for long phases (the zoo's 128 steps) on a CPU.

    With ``config.n_step > 1`` the minibatches are n-step transitions
    (:class:`~duel_tutorial.replay.NStepBatch`) and each target bootstraps with its own
    ``γ^m``.

    ``loss_fn`` (an :class:`UpdateLoss`) sets the precision and compilation; the default
    is the float32 eager loss. In bf16 the phase's target forward runs under autocast
    too, and frame stacks go to channels_last memory.
    """
    loss_fn = loss_fn or UpdateLoss(config, device)
    steps, size = config.gradient_steps, config.batch_size
    n_step = {"n_step": config.n_step, "gamma": config.gamma} if config.n_step > 1 else {}
    phase = buffer.sample(size, device, n_batches=steps, **n_step)  # all minibatches, stacked
    if loss_fn.bf16:
        phase = channels_last(phase)
    next_q_target_all = loss_fn.next_q_target(target_net, phase.next_obs)  # (steps * size, A)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), device=device)
    for k in range(steps):
        mb = slice(k * size, (k + 1) * size)  # minibatch k
        loss = loss_fn(online, target_net, type(phase)(*(field[mb] for field in phase)),
                       next_q_target_all[mb])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if math.isfinite(config.max_grad_norm):
            nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        total += loss.detach()
    return total


class LossMeter:
    """The mean training loss between two reads, summed on the device.

    :meth:`add` takes a phase's summed loss (no host sync); :meth:`take` returns the mean
    since the last take (NaN if nothing was learned) and notes when it is not finite:
    :attr:`diverged` then stays true.
    """

    def __init__(self, device: torch.device, updates_per_phase: int) -> None:
        self.sum = torch.zeros((), device=device)
        self.count, self.per_phase = 0, updates_per_phase
        self.diverged = False

    def add(self, phase_loss: torch.Tensor) -> None:
        self.sum += phase_loss
        self.count += self.per_phase

    def take(self) -> float:
        """The mean loss since the last take (one host sync)."""
        mean = self.sum.item() / self.count if self.count else math.nan
        if self.count and not math.isfinite(mean):
            self.diverged = True
        self.sum.zero_()
        self.count = 0
        return mean

    def check(self, network: nn.Module) -> bool:
        """Whether the pending losses and ``network``'s weights are all finite (one host
        sync); if not, :attr:`diverged` becomes true. Called before a checkpoint."""
        tensors = [self.sum, *network.parameters()]
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            self.diverged = True
        return not self.diverged
