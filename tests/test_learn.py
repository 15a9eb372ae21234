"""The learning update: bf16 and compiled updates compute the float32 eager update, within
a stated tolerance, and the 1/sqrt(2) gradient rescaling still acts under bf16."""

from __future__ import annotations

import copy

import pytest
import torch

from duel_tutorial.config import DQNConfig, preset
from duel_tutorial.learn import UpdateLoss, cpu_has_fast_bf16, resolve_precision
from duel_tutorial.model import DuelingQNetwork, scale_combined_gradient
from duel_tutorial.replay import Batch

CPU = torch.device("cpu")


def _frames_batch(n: int = 16, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    frames = lambda: torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8, generator=g)  # noqa: E731
    return Batch(frames(), torch.randint(0, 6, (n,), generator=g), torch.randn(n, generator=g),
                 frames(), torch.rand(n, generator=g) < 0.2, torch.zeros(n, dtype=torch.bool))


def _loss_and_grad(net: torch.nn.Module, batch: Batch, update: UpdateLoss
                   ) -> tuple[float, torch.Tensor]:
    net = copy.deepcopy(net)
    target = copy.deepcopy(net).requires_grad_(False)
    loss = update(net, target, batch, update.next_q_target(target, batch.next_obs))
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in net.parameters()])


def test_a_bf16_update_agrees_with_the_float32_one_on_a_fixed_batch():
    """Tolerance: loss within 2 %, gradient cosine above 0.99 (bf16 keeps 8 bits of
    mantissa; the weights, the target and the loss stay float32)."""
    torch.manual_seed(0)
    net = DuelingQNetwork(n_actions=6)
    config = preset("atari")
    batch = _frames_batch()
    loss32, grad32 = _loss_and_grad(net, batch, UpdateLoss(config, CPU, "fp32"))
    loss16, grad16 = _loss_and_grad(net.to(memory_format=torch.channels_last), batch,
                                    UpdateLoss(config, CPU, "bf16"))
    assert abs(loss16 - loss32) < 0.02 * abs(loss32)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99
    assert grad16.dtype == torch.float32  # gradients of float32 weights


def test_the_gradient_rescaling_still_acts_under_bf16():
    torch.manual_seed(0)
    plain = DuelingQNetwork(n_actions=6)
    scaled = copy.deepcopy(plain)
    scale_combined_gradient(scaled, 2**-0.5)
    update = UpdateLoss(preset("atari"), CPU, "bf16")
    batch = _frames_batch(8)
    grads = {}
    for name, net in (("plain", plain), ("scaled", scaled)):
        target = copy.deepcopy(net).requires_grad_(False)
        update(net, target, batch, torch.zeros(8, 6)).backward()
        grads[name] = {k: p.grad.norm().item() for k, p in net.named_parameters()}
    for k in ("conv.0.weight", "lin.weight"):
        assert abs(grads["scaled"][k] / grads["plain"][k] - 2**-0.5) < 0.02, k
    assert abs(grads["scaled"]["state_value.weight"] / grads["plain"]["state_value.weight"]
               - 1) < 0.02


def test_auto_precision_is_bf16_only_where_it_is_fast(monkeypatch):
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the book's reference numerics
    assert not cpu_has_fast_bf16() and resolve_precision("auto", CPU) == "fp32"
    # a GPU: bf16 only in hardware (torch's default also counts emulation, as on a T4)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)  # a T4
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="update_precision must be one of"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match=r"update_precision must be one of \('fp32', 'bf16', "):
        DQNConfig(update_precision="half")



_COMPILED_UPDATE = """
import copy
import torch
from duel_tutorial.config import DQNConfig
from duel_tutorial.learn import UpdateLoss
from duel_tutorial.model import MLPDuelingQNetwork
from duel_tutorial.replay import Batch

torch.manual_seed(0)
net, g = MLPDuelingQNetwork(4, 2), torch.Generator().manual_seed(1)
batch = Batch(torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g),
              torch.randn(32, generator=g), torch.randn(32, 4, generator=g),
              torch.rand(32, generator=g) < 0.1, torch.zeros(32, dtype=torch.bool))
config, cpu = DQNConfig(double_dqn=True, loss="huber"), torch.device("cpu")
results = []
for compile in (False, True):
    online = copy.deepcopy(net)
    target = copy.deepcopy(net).requires_grad_(False)
    update = UpdateLoss(config, cpu, compile=compile)
    loss = update(online, target, batch, update.next_q_target(target, batch.next_obs))
    loss.backward()
    results.append((loss.item(), torch.cat([p.grad.flatten() for p in online.parameters()])))
(eager, eager_grad), (compiled, compiled_grad) = results
assert abs(eager - compiled) < 1e-5, (eager, compiled)
torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-6)
"""


def test_a_compiled_update_computes_the_eager_one_and_caches_no_graph_under_an_override(
        tmp_path):
    """torch.compile may reorder float32 arithmetic: loss and gradients within 1e-5 of the
    eager update's.

    And inductor's FX graph cache (torch 2.13) does not key on ATEN_CPU_CAPABILITY: a
    graph compiled under avx2 and read back by a process with AVX-512 kernels wrote past
    its buffers (glibc aborted a native unit-test run that followed make unit, which runs
    under the reference numerics). So under an override the update compiles without that
    cache: the process here, under the reference's capability, writes no graph to it,
    though it compiles its kernels into the same cache folder. (One process: each
    compilation costs tens of seconds of make test.)"""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "ATEN_CPU_CAPABILITY": "avx2"}
    done = subprocess.run([sys.executable, "-c", _COMPILED_UPDATE], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    written = {path.name for path in tmp_path.rglob("*")}
    assert written and "fxgraph" not in written  # the folder was used, the graph cache not
