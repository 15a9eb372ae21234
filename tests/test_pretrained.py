"""The shipped Pong agent: its weights, its card, its logs, and one game on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duel_tutorial import DuelingQNetwork
from duel_tutorial.checkpoint import PRETRAINED_DIR, load_pretrained, pretrained_card
from duel_tutorial.envs import FRAME_SKIP
from duel_tutorial.evaluate import evaluate
from duel_tutorial.run import load_metrics


def test_the_shipped_pong_agent_maps_frames_to_six_q_values():
    agent = load_pretrained("pong", device="cpu")
    assert isinstance(agent, DuelingQNetwork) and not agent.training
    frames = torch.zeros(3, 4, 84, 84, dtype=torch.uint8)
    with torch.no_grad():
        q = agent(frames)
    assert q.shape == (3, 6) and q.dtype == torch.float32 and torch.isfinite(q).all()
    assert (PRETRAINED_DIR / "pong.safetensors").stat().st_size < 10e6


def test_the_shipped_pong_card_says_how_it_was_made_and_how_it_scored():
    card = pretrained_card("pong")
    ev = card["evaluation"]
    assert ev["episodes"] >= 10 and len(ev["returns"]) == ev["episodes"]
    assert ev["mean"] == pytest.approx(np.mean(ev["returns"]), abs=1e-3) and ev["mean"] >= 19
    assert card["frames"] == FRAME_SKIP * card["step"] and card["config"]["env_id"] == "ALE/Pong-v5"
    for key in ("git_commit", "device", "wall_time_s", "versions", "command"):
        assert card[key], key


def test_the_shipped_pong_logs_end_at_the_shipped_step():
    card = pretrained_card("pong")
    games = load_metrics(PRETRAINED_DIR / "pong_metrics.csv")
    evals = load_metrics(PRETRAINED_DIR / "pong_eval.csv")
    assert np.all(np.diff(games["step"]) >= 0) and games["step"][-1] <= card["step"]
    assert evals["step"][-1] == card["step"]


def test_the_shipped_pong_agent_wins_a_game_on_the_cpu():
    """One full game under the evaluation protocol, in this process, on the CPU."""
    agent = load_pretrained("pong", device="cpu")
    (score,) = evaluate(agent, "ALE/Pong-v5", episodes=1, seed=1)
    assert score >= 15
