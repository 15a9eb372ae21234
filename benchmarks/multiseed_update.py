"""What training several seeds in one process buys: K MinAtar DQN updates, one per seed,
done one after another (the baseline) or as one update over stacked parameters.

On a CPU, a small network's update is bound by per-operation overhead (Python, the
dispatcher, autograd), not by arithmetic: MinAtar's network has 130,000 parameters and a
minibatch of 32. ``torch.func`` can stack the K seeds' parameters and run the forward
pass, the Double DQN target, the Huber loss and the gradient for all of them at once
(``vmap`` over ``grad``); gradient-norm clipping is done per seed and one fused Adam
step updates the stacked tensors (Adam is elementwise, so this is K independent Adams).
The script checks that the stacked update computes the same new weights as the K
separate ones (within float32 rounding), then times both, interleaved, and prints the
median time per K-seed update and the ratio.

    .venv/bin/python benchmarks/multiseed_update.py              # K = 1, 5, 10
    .venv/bin/python benchmarks/multiseed_update.py --seeds 1 10 20 --game Seaquest

Only the update is measured: acting and the environments (MinAtar steps at tens of
thousands per second) are not included.
"""

from __future__ import annotations

import argparse
import copy

import torch
from _timing import median_ms  # benchmarks/_timing.py
from torch.func import functional_call, grad, stack_module_state, vmap

from duel_tutorial.config import preset
from duel_tutorial.model import MinAtarDuelingQNetwork
from duel_tutorial.targets import dqn_loss, td_loss, td_target

CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


def batches(k: int, c: int, n_actions: int, size: int = 32, seed: int = 0) -> dict:
    """K minibatches of random grids, one per seed, stacked on a leading axis."""
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.rand(k, size, c, 10, 10, generator=g) < 0.2,
            "action": torch.randint(0, n_actions, (k, size), generator=g),
            "reward": torch.randn(k, size, generator=g),
            "next_obs": torch.rand(k, size, c, 10, 10, generator=g) < 0.2,
            "terminated": torch.rand(k, size, generator=g) < 0.05}


class Separate:
    """K networks, K optimizers: the update every seed's own process would do."""

    def __init__(self, nets: list, gamma: float, lr: float, eps: float, clip: float) -> None:
        self.nets = [copy.deepcopy(n) for n in nets]
        self.targets = [copy.deepcopy(n).requires_grad_(False) for n in nets]
        self.opts = [torch.optim.Adam(n.parameters(), lr=lr, eps=eps, fused=True)
                     for n in self.nets]
        self.gamma, self.clip = gamma, clip

    def update(self, b: dict) -> None:
        from duel_tutorial.replay import Batch

        for k, (net, target, opt) in enumerate(zip(self.nets, self.targets, self.opts,
                                                   strict=True)):
            batch = Batch(b["obs"][k], b["action"][k], b["reward"][k], b["next_obs"][k],
                          b["terminated"][k], torch.zeros_like(b["terminated"][k]))
            loss = dqn_loss(net, target, batch, self.gamma, double=True, loss="huber")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.clip)
            opt.step()


class Stacked:
    """The same K updates as one: stacked parameters, vmap over grad, one fused Adam."""

    def __init__(self, nets: list, gamma: float, lr: float, eps: float, clip: float) -> None:
        self.params, _ = stack_module_state([copy.deepcopy(n) for n in nets])
        self.target_params = {k: v.detach().clone() for k, v in self.params.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")
        self.names = list(self.params)
        self.tensors = [self.params[k] for k in self.names]
        self.opt = torch.optim.Adam(self.tensors, lr=lr, eps=eps, fused=True)
        self.gamma, self.clip = gamma, clip

        def loss(params, target_params, obs, action, reward, next_obs, terminated):
            q = lambda p, x: functional_call(self.base, p, (x,))  # noqa: E731
            next_online = q(params, next_obs).detach()
            next_target = q(target_params, next_obs)
            y = td_target(reward, terminated, next_target, self.gamma, next_online)
            taken = q(params, obs).gather(1, action.unsqueeze(1)).squeeze(1)
            return td_loss(taken, y.detach(), "huber")

        self.grads = vmap(grad(loss))

    def update(self, b: dict) -> None:
        params = dict(zip(self.names, self.tensors, strict=True))
        g = self.grads(params, self.target_params, b["obs"], b["action"], b["reward"],
                       b["next_obs"], b["terminated"])
        grads = [g[k] for k in self.names]
        # per-seed global norm: sqrt(sum over tensors of the seed's squared entries)
        norms = torch.stack([x.flatten(1).pow(2).sum(1) for x in grads]).sum(0).sqrt()
        scale = (self.clip / (norms + 1e-6)).clamp(max=1.0)  # clip_grad_norm_'s rule
        for t, x in zip(self.tensors, grads, strict=True):
            t.grad = x * scale.view(-1, *([1] * (x.dim() - 1)))
        self.opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--game", default="Breakout", choices=sorted(CHANNELS))
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    c, n = CHANNELS[args.game], ACTIONS[args.game]
    p = preset("minatar")
    hyper = {"gamma": p.gamma, "lr": p.lr, "eps": p.adam_eps, "clip": p.max_grad_norm}
    print(f"MinAtar {args.game} network ({c} channels, {n} actions), batch {p.batch_size}, "
          f"1 thread; median ms per update of all K seeds")
    print(f"{'K':>3} {'separate':>10} {'stacked':>10} {'ratio':>6}  max |weight difference|")
    for k in args.seeds:
        torch.manual_seed(0)
        nets = [MinAtarDuelingQNetwork(n, c) for _ in range(k)]
        b = batches(k, c, n, p.batch_size)
        separate, stacked = Separate(nets, **hyper), Stacked(nets, **hyper)
        separate.update(b)
        stacked.update(b)
        diff = max((stacked.params[name][j] - dict(net.named_parameters())[name]).abs().max()
                   .item() for j, net in enumerate(separate.nets) for name in stacked.names)
        a, s = [], []
        for _ in range(2):  # interleaved rounds; the faster round of each
            a.append(median_ms(lambda s=separate, b=b: s.update(b), args.repeats))
            s.append(median_ms(lambda s=stacked, b=b: s.update(b), args.repeats))
        a, s = min(a), min(s)
        print(f"{k:>3} {a:>9.2f} {s:>10.2f} {a / s:>5.1f}x  {diff:.1e}")


if __name__ == "__main__":
    main()
