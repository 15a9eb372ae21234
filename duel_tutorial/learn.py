"""Learning from replay: a training phase of minibatch updates, and the loss it reports.

:func:`train_phase` is step 4 of the training loop (:mod:`duel_tutorial.train`):
``config.gradient_steps`` updates, each :func:`~duel_tutorial.targets.dqn_loss` on a
fresh minibatch, backward, gradient-norm clipping and an Adam step. :class:`LossMeter`
keeps the sum of the losses on the device and reads it back only when the loop logs, so
the loop does not wait for every update to finish before it steps the environments.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from duel_tutorial.config import DQNConfig
from duel_tutorial.replay import Batch, FrameReplayBuffer, ReplayBuffer
from duel_tutorial.targets import dqn_loss


def train_phase(
    online: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer | FrameReplayBuffer,
    config: DQNConfig,
    device: torch.device,
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
    """
    steps, size = config.gradient_steps, config.batch_size
    phase = buffer.sample(size, device, n_batches=steps)  # all minibatches, stacked
    with torch.no_grad():
        next_q_target_all = target_net(phase.next_obs)  # (steps * size, n_actions)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), device=device)
    for k in range(steps):
        mb = slice(k * size, (k + 1) * size)  # minibatch k
        # L = loss(Q(s, a), y), y = r + γ (1 - terminated) Q_target(s', a*)
        loss = dqn_loss(online, target_net, Batch(*(field[mb] for field in phase)),
                        config.gamma, double=config.double_dqn, loss=config.loss,
                        next_q_target=next_q_target_all[mb])
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
