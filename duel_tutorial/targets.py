"""What the network learns towards: the one-step TD target, the loss, the target network.

The TD target for a transition ``(s, a, r, s')`` (Mnih et al., 2015):

    DQN:         y = r + γ (1 - terminated) max_a' Q_target(s', a')
    Double DQN:  y = r + γ (1 - terminated) Q_target(s', argmax_a' Q_online(s', a'))

(van Hasselt et al., 2016; Wang et al., 2016 train their dueling networks with it).

Only ``terminated`` (a true terminal state: the pole fell) stops bootstrapping. A
``truncated`` episode (a time limit: CartPole stops at 500 steps) did not end in
``s'``; its future is unknown, not zero, so the target bootstraps from ``s'`` as usual.
That is why :func:`td_target` takes ``terminated`` and has no ``truncated`` argument.

The target network is a lagged copy of the online network: :func:`hard_update` copies it
every N steps (Mnih et al., 2015), :func:`polyak_update` moves it a fraction ``tau``
towards the online weights (Lillicrap et al., 2016); ``tau = 1`` is the hard copy.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from duel_tutorial.replay import Batch, NStepBatch

Loss = Literal["huber", "mse"]
LOSSES: tuple[Loss, ...] = ("huber", "mse")


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float | torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """One-step TD targets ``y: (B,)``.

    Args:
        reward: ``(B,)`` rewards r.
        terminated: ``(B,)`` bool, True where ``s'`` is terminal (no bootstrap there).
        next_q_target: ``(B, n_actions)`` target-network Q-values at ``s'``.
        gamma: discount factor in [0, 1], or ``(B,)`` factors (``γ^m`` of n-step returns).
        next_q_online: ``(B, n_actions)`` online-network Q-values at ``s'`` for Double DQN
            (the online network picks the action, the target network values it);
            ``None`` for the plain DQN max target.
    """
    if next_q_target.dim() != 2 or next_q_target.shape[0] != reward.shape[0]:
        raise ValueError(f"next_q_target must have shape (B, n_actions) with B = "
                         f"{reward.shape[0]}; got {tuple(next_q_target.shape)}")
    if next_q_online is None:
        # max_a' Q_target(s', a')
        next_value = next_q_target.max(dim=1).values
    else:
        if next_q_online.shape != next_q_target.shape:
            raise ValueError(f"next_q_online must have the shape of next_q_target "
                             f"{tuple(next_q_target.shape)}; got {tuple(next_q_online.shape)}")
        # a* = argmax_a' Q_online(s', a');  Q_target(s', a*)
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    # y = r + γ (1 - terminated) V(s')
    return reward + gamma * next_value * (~terminated.bool()).to(next_value.dtype)


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, loss: Loss = "huber") -> torch.Tensor:
    """Mean loss between ``Q(s, a): (B,)`` and targets ``y: (B,)``.

    ``"huber"`` (default; Mnih et al., 2015 clip the TD error to [-1, 1], which is the
    gradient of the Huber loss with delta 1) or ``"mse"`` (squared error, as in the
    training sketch).
    """
    if q_taken.shape != target.shape:
        raise ValueError(f"q_taken and target must have the same shape; got "
                         f"{tuple(q_taken.shape)} and {tuple(target.shape)}")
    if loss == "huber":
        # mean of 1/2 δ² if |δ| < 1 else |δ| - 1/2,  δ = y - Q(s, a)
        return F.smooth_l1_loss(q_taken, target)
    if loss == "mse":
        # mean of δ²
        return F.mse_loss(q_taken, target)
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")


def dqn_loss(
    online: nn.Module,
    target_net: nn.Module,
    batch: Batch | NStepBatch,
    gamma: float,
    *,
    double: bool = False,
    loss: Loss = "huber",
    next_q_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DQN (or Double DQN) loss of a :class:`~duel_tutorial.replay.Batch`, a scalar.

    Gradients flow through ``Q_online(s, a)`` only; the target is computed without them.
    ``next_q_target``: ``Q_target(s', ·)`` of this batch if already computed, ``(B,
    n_actions)``; a training phase computes it for all its minibatches in one forward
    pass, since the target network does not change within a phase.
    """
    with torch.no_grad():
        if next_q_target is None:
            next_q_target = target_net(batch.next_obs)  # (B, n_actions)
        # Double DQN: the *current* online network picks a* = argmax_a' Q(s', a')
        next_q_online = online(batch.next_obs).float() if double else None
        # n-step batches: y = Σ_{k<m} γ^k r_{t+k} + γ^m (1 - terminated) V(s_{t+m})
        discount = batch.discount if isinstance(batch, NStepBatch) else gamma
        y = td_target(batch.reward, batch.terminated, next_q_target.float(), discount,
                      next_q_online)
    # Q(s, a) for the actions actually taken: (B,). float(): under bf16 autocast the
    # network returns bf16; the target and the loss stay float32 (a no-op in float32)
    q_taken = online(batch.obs).float().gather(1, batch.action.unsqueeze(1)).squeeze(1)
    return td_loss(q_taken, y, loss)


@torch.no_grad()
def hard_update(target_net: nn.Module, online: nn.Module) -> None:
    """θ⁻ ← θ: copy the online weights into the target network."""
    for t, o in zip(target_net.parameters(), online.parameters(), strict=True):
        t.copy_(o)


@torch.no_grad()
def polyak_update(target_net: nn.Module, online: nn.Module, tau: float) -> None:
    """θ⁻ ← τ θ + (1 - τ) θ⁻ for 0 < τ <= 1 (τ = 1 is :func:`hard_update`)."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1]; got {tau!r}")
    if tau == 1.0:
        hard_update(target_net, online)
        return
    for t, o in zip(target_net.parameters(), online.parameters(), strict=True):
        # θ⁻ + τ (θ - θ⁻)
        t.lerp_(o, tau)
