"""The run directory: everything a training run writes, and the rules that keep it usable.

A run directory holds ``metrics.csv`` (one row per finished episode: step, episode,
return, length, epsilon, loss, sps, and time_s, the run's wall clock over all its
sessions; each line written whole and flushed), ``eval.csv`` (periodic greedy
evaluations, if asked: their returns' summary, the wall clock, and how many units of the
network's hidden layer are dead or dormant on replayed states, NaN for networks without
one), ``sessions.jsonl`` (the run's history: a line when each session
starts or resumes, with its command, commit, device, processor and config, and one when it
ends, with its outcome), checkpoints ``last`` and ``final`` (see
:mod:`duel_tutorial.checkpoint` for the format) and ``.lock``. This module alone reads and
writes them:

- :func:`run_lock`: one process trains in a folder at a time (an exclusive lock);
- :func:`holds_run`: a folder holds a run once it has a checkpoint; a run killed before
  its first one can start again;
- :class:`MetricsLog`, :func:`load_metrics`: logs whose last line, if a crash or a full
  disk cut it short, is left out and cut on resume;
- :class:`SessionHistory`, :func:`load_sessions`: the history of the run's sessions,
  append-only (a resume never cuts it: a session that died after its last checkpoint
  stays on record);
- :func:`save_run_checkpoint`, :func:`restore_run_checkpoint`: the training state
  (networks, optimizer, replay, RNG states, counters) in a checkpoint and back;
- :func:`check_same_run`, :func:`resume_config`: a resume keeps the run's algorithm;
  only :data:`RESUMABLE_OVERRIDES` may change;
- :class:`RunCounters`, :class:`RunLog`: where a run stands, and what it reports as it
  goes (the metrics rows, the evaluations, progress on stderr);
- :func:`stop_on_signals`: Ctrl-C and SIGTERM stop the run between two steps, so that it
  can save a checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from duel_tutorial.checkpoint import (
    FORMAT_VERSION,
    check_compatible,
    load_checkpoint,
    load_network_state,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    strip_prefix,
    with_prefix,
)
from duel_tutorial.config import DQNConfig
from duel_tutorial.provenance import provenance
from duel_tutorial.replay import FrameReplayBuffer, ReplayBuffer

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("step", "episode", "return", "length", "epsilon", "loss", "sps",
                   "time_s")
EVAL_FILE = "eval.csv"
EVAL_COLUMNS = ("step", "mean", "std", "min", "max", "time_s", "dead_units",
                "dormant_units")
SESSIONS_FILE = "sessions.jsonl"
SESSION_EVENTS = ("start", "resume", "finished", "stopped", "diverged", "failed")
# Columns that measure the machine, not the run: they differ between identical runs.
# time_s is the wall clock since the run started, all sessions together, evaluations
# included (a run's learning curve in hours).
TIMING_COLUMNS = ("sps", "time_s")
# Fields that may differ between a run and its --resume. None changes the algorithm:
# total_steps moves only where the run stops, since the epsilon and learning-rate
# schedules keep the horizon of the run's first start (its "schedule_horizon"); the
# device, the thread count and compiling the update change only floating-point rounding.
RESUMABLE_OVERRIDES = ("total_steps", "checkpoint_interval", "checkpoint_replay", "device",
                       "torch_threads", "compile_update")
LOCK_FILE = ".lock"


class MetricsLog:
    """An append-only CSV log (``metrics.csv``, ``eval.csv``), flushed after every row.

    ``keep_rows`` (on resume) first cuts the file back to its header and that many rows.
    """

    def __init__(self, path: Path, columns: Sequence[str], keep_rows: int | None = None
                 ) -> None:
        self.path, self.columns = path, tuple(columns)
        if keep_rows is not None and path.exists():
            lines = _whole_lines(path.read_text())
            if len(lines) - 1 < keep_rows:
                raise ValueError(f"{path} has {len(lines) - 1} rows, but the checkpoint "
                                 f"says {keep_rows} were written")
            tmp = path.with_suffix(f".csv.{os.getpid()}.tmp")
            tmp.write_text("".join(lines[: keep_rows + 1]))
            os.replace(tmp, path)
        existing = _whole_lines(path.read_text()) if path.exists() else []
        if existing:  # a run started by an older version keeps its file's columns
            header = tuple(existing[0].rstrip("\n").split(","))
            if not set(header) <= set(self.columns):
                raise ValueError(f"{path} has columns {list(header)}; expected some of "
                                 f"{list(self.columns)}")
            self.columns = header
        # an empty file, or one whose header was cut short, starts again
        self.file = path.open("a" if existing else "w", newline="")
        self.writer = csv.writer(self.file, lineterminator="\n")
        if not existing:
            self.writer.writerow(self.columns)
            self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow([row[c] for c in self.columns])  # one line, one write
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _whole_lines(text: str) -> list[str]:
    """The lines of a log, without a last line cut short (a crash or a full disk mid-write
    can leave one: every line the log writes ends with a newline)."""
    lines = text.splitlines(keepends=True)
    return lines if not lines or lines[-1].endswith("\n") else lines[:-1]


def load_metrics(run: str | Path, file: str = METRICS_FILE) -> dict[str, np.ndarray]:
    """A run's ``metrics.csv`` (or ``eval.csv``) as one numpy array per column.

    ``loss`` is NaN in rows logged before learning started. A last line cut short (the
    writer was killed or the disk filled up mid-line) is left out.
    """
    path = Path(run)
    path = path / file if path.is_dir() else path
    reader = csv.DictReader(_whole_lines(path.read_text()))
    rows = list(reader)
    columns = reader.fieldnames or []
    if any(None in row or None in row.values() for row in rows):
        raise ValueError(f"{path} has a row whose number of fields is not {len(columns)}")
    out = {}
    for column in columns:
        kind = int if column in ("step", "episode", "length") else float
        out[column] = np.array([kind(r[column]) for r in rows], dtype=kind)
    return out


def record_session(out: Path, event: str, step: int, **fields: Any) -> None:
    """Append a line to the run's ``sessions.jsonl``: ``event`` (one of
    :data:`SESSION_EVENTS`) at ``step``, with the time and ``fields``. "start" and "resume"
    add the provenance of this process (command, commit, device, processor, versions).
    Written whole and flushed, as the logs are."""
    if event not in SESSION_EVENTS:
        raise ValueError(f"a session event must be one of {SESSION_EVENTS}; got {event!r}")
    record: dict[str, Any] = {"event": event, "step": step}
    if event in ("start", "resume"):
        record.update(provenance(**fields))
        del record["wall_time_s"]  # the session has only begun
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        record.update(created=now.isoformat(timespec="seconds"), **fields)
    path = out / SESSIONS_FILE
    if path.exists():  # a line cut short by a crash or a full disk: cut it off first
        text = path.read_text()
        if text and not text.endswith("\n"):
            path.write_text("".join(_whole_lines(text)))
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


class SessionHistory:
    """One training session's lines in its run's ``sessions.jsonl``: :meth:`begin` ("start"
    or "resume", with provenance and the config), then :meth:`end` (how it ended) or
    :meth:`fail` (the error that ended it). Nothing is written for ``out=None``, nor by
    :meth:`fail` before :meth:`begin` (the request never became a session of the run)."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.counters: RunCounters | None = None  # set while the session is open

    def begin(self, counters: RunCounters, resume: bool, command: str | None,
              device: torch.device, config: DQNConfig) -> None:
        if self.out is not None:
            record_session(self.out, "resume" if resume else "start", counters.step,
                           command=command, device=device, config=config.to_dict())
            self.counters = counters

    def end(self, outcome: str, session_s: float) -> None:
        if self.counters is not None:
            record_session(self.out, outcome, self.counters.step, session_s=round(session_s, 2),
                           run_s=round(self.counters.wall_time_s + session_s, 2))
            self.counters = None

    def fail(self, err: BaseException) -> None:
        if self.counters is not None:
            with contextlib.suppress(OSError):  # a full disk must not hide the error itself
                record_session(self.out, "failed", self.counters.step,
                               error=f"{type(err).__name__}: {err}")
            self.counters = None


def load_sessions(run: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``sessions.jsonl``, oldest first ([] for a run without one:
    it started before the history was kept). A last line cut short is left out."""
    path = Path(run) / SESSIONS_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(_whole_lines(path.read_text()), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path} line {number} is not a JSON record") from None
        if not isinstance(record, dict) or record.get("event") not in SESSION_EVENTS:
            raise ValueError(f"{path} line {number} is not a session record (an object "
                             f"with an event in {SESSION_EVENTS})")
        records.append(record)
    return records


def copy_log(source: Path, dest: Path, last_step: int) -> None:
    """Copy a run's log (``metrics.csv``, ``eval.csv``): the header and the whole rows up
    to ``last_step`` (what a checkpoint at that step had seen)."""
    lines = _whole_lines(source.read_text())
    rows = csv.reader(lines[1:])
    keep = [line for line, row in zip(lines[1:], rows, strict=True) if int(row[0]) <= last_step]
    dest.write_text("".join(lines[:1] + keep))


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run that can be resumed or evaluated (a checkpoint).

    A folder with only a log (a run killed before its first checkpoint, or one that
    failed to start) holds nothing to resume: a new run may start there.
    """
    return any((out / f"{name}.safetensors").exists() for name in ("last", "final"))


def check_run_state(out: Path, resume: bool) -> None:
    """A one-line error unless ``out`` suits the request: a resume needs a checkpoint in
    it; a new run needs none (a log without one is a run that died early: it starts over)."""
    if resume and not holds_run(out):
        raise ValueError(f"{out} holds no checkpoint to resume (the run stopped before its "
                         "first one); start it again without --resume")
    if not resume and holds_run(out):
        raise ValueError(f"{out} already holds a run (a checkpoint); resume it with --resume, "
                         "or choose another output directory")


@contextlib.contextmanager
def run_lock(out: Path | None):
    """An exclusive lock on the run directory for as long as one process trains in it."""
    if out is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no lock
        yield
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a run directory")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise ValueError(f"another process (pid {holder}) is training in {out}; wait for "
                             "it to finish, or choose another output directory") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def json_step(path: Path) -> int | None:
    """The ``step`` recorded in a checkpoint's sidecar, or ``None`` if there is none."""
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def save_run_checkpoint(
    path: Path, config: DQNConfig, network_info: dict[str, Any], online: nn.Module,
    target_net: nn.Module, optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer | FrameReplayBuffer, act_rng: np.random.Generator, *,
    counters: dict[str, Any], wall: float, with_replay: bool,
    device: torch.device, command: str | None,
) -> None:
    """Write a checkpoint: tensors to safetensors, the rest to the sidecar."""
    tensors = {**with_prefix("online", online.state_dict()),
               **with_prefix("target", target_net.state_dict()),
               "rng/torch": torch.get_rng_state()}
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    if with_replay:
        replay = {k: torch.from_numpy(v) for k, v in buffer.state_dict().items()}
        tensors.update(with_prefix("replay", replay))
    sidecar = provenance(
        command=command, device=device, wall_time_s=wall, format=FORMAT_VERSION,
        name=path.name, config=config.to_dict(), **counters, network=network_info,
        optimizer=opt_meta, replay_size=len(buffer) if with_replay else 0,
        rng={"act": act_rng.bit_generator.state, "replay": buffer.rng.bit_generator.state},
    )
    save_checkpoint(path, tensors, sidecar)


def restore_run_checkpoint(
    out: Path, config: DQNConfig, network_info: dict[str, Any], online: nn.Module,
    target_net: nn.Module, optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer | FrameReplayBuffer, act_rng: np.random.Generator,
) -> dict[str, Any]:
    """Load ``out/last`` into the given objects; return its sidecar (counters and all)."""
    tensors, sidecar = load_checkpoint(out, "last")
    check_same_run(DQNConfig.from_dict(sidecar["config"]), config, out)
    check_compatible(sidecar, network=config.network, hidden=config.hidden,
                     obs_shape=tuple(network_info["obs_shape"]),
                     n_actions=network_info["n_actions"])
    load_network_state(online, strip_prefix("online", tensors), f"{out}/last")
    load_network_state(target_net, strip_prefix("target", tensors), f"{out}/last")
    optimizer_from_tensors(optimizer, tensors, sidecar["optimizer"])
    replay = strip_prefix("replay", tensors)
    if replay:
        buffer.load_state_dict({k: v.numpy() for k, v in replay.items()})
    try:
        act_rng.bit_generator.state = sidecar["rng"]["act"]
        buffer.rng.bit_generator.state = sidecar["rng"]["replay"]
        torch.set_rng_state(tensors["rng/torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{out}/last: its random generator states are not ones this run "
                         f"can restore ({type(err).__name__}: {' '.join(str(err).split())})"
                         ) from None
    return sidecar


def check_same_run(saved: DQNConfig, config: DQNConfig, out: Path) -> None:
    """Resuming must not change the algorithm: only RESUMABLE_OVERRIDES may differ."""
    for f in dataclasses.fields(DQNConfig):
        if f.name in RESUMABLE_OVERRIDES:
            continue
        old, new = getattr(saved, f.name), getattr(config, f.name)
        if old != new:
            raise ValueError(
                f"resuming {out} must keep its saved config, where {f.name} is {old!r}, not "
                f"{new!r}; only {', '.join(RESUMABLE_OVERRIDES)} may change (start a new run "
                "for a different config)"
            )


def resume_config(out: Path, overrides: dict[str, Any]) -> DQNConfig:
    """The saved config of the run in ``out``, with the overrides given on the command line."""
    check_run_state(out, resume=True)
    _, sidecar = load_checkpoint(out, "last")
    saved = DQNConfig.from_dict(sidecar["config"])
    config = dataclasses.replace(saved, **overrides)
    check_same_run(saved, config, out)
    return config


# --- where a run stands, and what it reports ------------------------------------------


@dataclass
class RunCounters:
    """Where a run stands: saved in every checkpoint's sidecar, restored on resume."""

    step: int = 0  # environment steps (all vector envs together)
    episode: int = 0  # finished episodes
    metrics_rows: int = 0  # rows in metrics.csv
    eval_rows: int = 0  # rows in eval.csv
    schedule_horizon: int = 0  # the steps the epsilon and learning-rate schedules span
    wall_time_s: float = 0.0  # training time of the sessions before this one

    @classmethod
    def start(cls, config: DQNConfig) -> RunCounters:
        return cls(schedule_horizon=config.total_steps)

    @classmethod
    def from_sidecar(cls, sidecar: dict[str, Any]) -> RunCounters:
        return cls(step=sidecar["step"], episode=sidecar["episode"],
                   metrics_rows=sidecar["metrics_rows"], eval_rows=sidecar.get("eval_rows", 0),
                   schedule_horizon=sidecar.get("schedule_horizon",
                                                sidecar["config"]["total_steps"]),
                   wall_time_s=sidecar["wall_time_s"])


PROGRESS = (True, False, "bar", "lines", "off")


def check_progress(progress: bool | str) -> None:
    if progress not in PROGRESS:
        raise ValueError(f"progress must be True, False, 'bar', 'lines' or 'off'; got "
                         f"{progress!r}")


class RunLog:
    """What a run reports as it goes: the returns and lengths of the running episodes, a
    row for each one that ends (``metrics.csv``), the greedy evaluations (``eval.csv``)
    and progress on stderr. Keeps ``counters.episode``, ``metrics_rows`` and
    ``eval_rows`` up to date.

    ``out=None``: rows only in memory (:attr:`rows`, :attr:`evals`). On resume the logs are
    cut back to the rows the checkpoint counted; on a fresh start, logs left by a run that
    never reached a checkpoint are removed.
    """

    def __init__(self, out: Path | None, counters: RunCounters, num_envs: int, total_steps: int,
                 *, resume: bool, evaluations: bool, progress: bool | str = False) -> None:
        check_progress(progress)
        self.counters = counters
        self.rows: list[dict[str, Any]] = []  # this session's metrics rows
        self.evals: list[dict[str, Any]] = []  # this session's evaluations
        self.ep_return = np.zeros(num_envs)
        self.ep_length = np.zeros(num_envs, dtype=np.int64)
        self.metrics = self.eval_log = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if not resume:
                for stale in (METRICS_FILE, EVAL_FILE, SESSIONS_FILE):
                    (out / stale).unlink(missing_ok=True)
            self.metrics = MetricsLog(out / METRICS_FILE, METRICS_COLUMNS,
                                      counters.metrics_rows if resume else None)
            if evaluations:
                self.eval_log = MetricsLog(out / EVAL_FILE, EVAL_COLUMNS,
                                           counters.eval_rows if resume else None)
        self.lines = _ProgressLines(total_steps) if progress == "lines" else None
        self.bar = tqdm(total=total_steps, initial=counters.step, file=sys.stderr, unit="step",
                        disable=progress not in (True, "bar"), dynamic_ncols=True)
        self.start_time, self.start_step = time.perf_counter(), counters.step

    def elapsed(self) -> float:
        """Seconds since this session started training."""
        return time.perf_counter() - self.start_time

    def run_time(self) -> float:
        """Seconds since the run started: the sessions before this one and this one."""
        return self.counters.wall_time_s + self.elapsed()

    def add(self, reward: np.ndarray, valid: np.ndarray) -> None:
        """Count one vector step into the running episodes."""
        self.ep_return += reward
        self.ep_length += valid

    def end_episodes(self, ended: np.ndarray, step: int, epsilon: float, loss: float) -> None:
        """A metrics row for each sub-environment in ``ended``; ``loss`` (the mean since the
        last row) goes on the first of them."""
        sps = (step - self.start_step) / max(self.elapsed(), 1e-9)
        time_s = round(self.run_time(), 3)
        for i in np.flatnonzero(ended):
            self.counters.episode += 1
            row = {"step": step, "episode": self.counters.episode,
                   "return": round(float(self.ep_return[i]), 4),
                   "length": int(self.ep_length[i]), "epsilon": round(epsilon, 4),
                   "loss": round(loss, 6), "sps": round(sps), "time_s": time_s}
            loss = math.nan  # the loss belongs to the first row of this step
            self.rows.append(row)
            self.counters.metrics_rows += 1
            if self.metrics is not None:
                self.metrics.write(row)
            self.ep_return[i], self.ep_length[i] = 0.0, 0
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix({"return": self.rows[-1]["return"], "sps": self.rows[-1]["sps"]},
                             refresh=False)
        if self.lines is not None:
            self.lines.maybe_print(step, self.counters.episode, self.rows)

    def add_evaluation(self, step: int, returns: np.ndarray,
                       units: dict[str, int | float] | None = None) -> float:
        """Log a greedy evaluation's episode returns, and the hidden layer's dead and
        dormant units at that step (NaN without them); returns the returns' mean."""
        self.evals.append({"step": step, "mean": round(float(returns.mean()), 4),
                           "std": round(float(returns.std()), 4),
                           "min": float(returns.min()), "max": float(returns.max()),
                           "time_s": round(self.run_time(), 3),
                           "dead_units": units["dead"] if units else float("nan"),
                           "dormant_units": units["dormant"] if units else float("nan")})
        self.counters.eval_rows += 1
        if self.eval_log is not None:
            self.eval_log.write(self.evals[-1])
        return self.evals[-1]["mean"]

    def close(self, step: int) -> None:
        self.bar.update(step - self.bar.n)
        self.bar.close()
        for log in (self.metrics, self.eval_log):
            if log is not None:
                log.close()


class _ProgressLines:
    """Plain progress lines on stderr, at every 10% of the run or every minute."""

    def __init__(self, total: int) -> None:
        self.total, self.next_step, self.next_time = total, 0, time.monotonic() + 60

    def maybe_print(self, step: int, episode: int, rows: list[dict[str, Any]]) -> None:
        if step < self.next_step and time.monotonic() < self.next_time:
            return
        recent = [row["return"] for row in rows[-10:]]
        print(f"step {step:,}/{self.total:,} ({step / self.total:.0%}), episode {episode:,}, "
              f"mean return of the last {len(recent)} {np.mean(recent):.1f}, "
              f"{rows[-1]['sps']:,} steps/s", file=sys.stderr, flush=True)
        self.next_step = step + max(1, self.total // 10)
        self.next_time = time.monotonic() + 60


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) and SIGTERM set a flag that the loop checks once per step, so the
    run stops between two steps and saves a checkpoint, instead of dying mid-update.
    A second Ctrl-C interrupts at once. Only in the main thread (where Python delivers
    signals); elsewhere the flag is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
