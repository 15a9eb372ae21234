"""Replay sampling cost against capacity: the running-count length vs a scan of the window.

``FrameReplayBuffer.sample`` asks ``len(self)`` on every call (to refuse a batch larger
than what is stored). That length used to be a scan of the validity mask over the whole
window, O(capacity); it is now a counter each write keeps up to date, O(1). This script
fills a buffer of each capacity with a synthetic history (valid transitions, a new game
every ~800 steps), then times, interleaved in one process, a batch-32 ``sample`` as it
is (ours) and the same ``sample`` preceded by the old scan (the baseline), and prints the
medians and their ratio. Sampling itself draws 32 indices and gathers 5 frames for each,
so with the counter it should cost the same at 100,000 and at 1,000,000 transitions.

    .venv/bin/python benchmarks/replay_capacity.py                  # 100k and 1M
    .venv/bin/python benchmarks/replay_capacity.py --capacities 100000 --frame 84

Memory: capacity x frame^2 bytes of frames (7.1 GB at 1M and 84x84); ``--frame 42``
quarters it (the frame size changes the gather, not the index arithmetic).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _timing import median_ms  # benchmarks/_timing.py

from duel_tutorial.provenance import provenance, write_provenance
from duel_tutorial.replay import FrameReplayBuffer


def filled(capacity: int, frame: int, num_envs: int = 4) -> FrameReplayBuffer:
    """A buffer whose rings are full: one game start every ~800 steps per stream."""
    buffer = FrameReplayBuffer(capacity, num_envs, (frame, frame), seed=0)
    shape = (buffer.num_envs, buffer.slots)
    first = np.zeros(shape, dtype=bool)
    first[:, ::800] = True
    valid = ~np.roll(first, -1, axis=1)  # the step into a new game is not a transition
    state = {"frames": np.zeros((*shape, frame, frame), np.uint8),
             "action": np.zeros(shape, np.int64), "reward": np.zeros(shape, np.float32),
             "terminated": np.zeros(shape, bool), "truncated": np.zeros(shape, bool),
             "first": first, "valid": valid, "written": np.array([3 * buffer.slots])}
    buffer.load_state_dict(state)
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--frame", type=int, default=84, help="frame side in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", default=None, help="also write the results with provenance")
    args = parser.parse_args()
    start, results = time.perf_counter(), {}
    torch.set_num_threads(1)
    print(f"batch {args.batch}, frames {args.frame}x{args.frame}, median of {args.repeats}")
    print(f"{'capacity':>10} {'ours (ms)':>10} {'with scan (ms)':>15} {'ratio':>6}")
    for capacity in args.capacities:
        buffer = filled(capacity, args.frame)
        assert len(buffer) == buffer._count_window() > args.batch

        def ours(buffer=buffer) -> None:
            buffer.sample(args.batch)

        def baseline(buffer=buffer) -> None:
            buffer._count_window()  # what every sample paid before
            buffer.sample(args.batch)

        mine, old = [], []
        for _ in range(3):  # interleaved rounds
            mine.append(median_ms(ours, args.repeats // 3))
            old.append(median_ms(baseline, args.repeats // 3))
        a, b = float(np.median(mine)), float(np.median(old))
        print(f"{capacity:>10,} {a:>10.3f} {b:>15.3f} {b / a:>5.1f}x")
        results[str(capacity)] = {"ours_ms": round(a, 4), "with_scan_ms": round(b, 4)}
        del buffer
    if args.json:
        write_provenance(args.json, provenance(
            device="cpu", wall_time_s=time.perf_counter() - start, batch=args.batch,
            frame=args.frame, repeats=args.repeats, sample_ms=results))


if __name__ == "__main__":
    main()
