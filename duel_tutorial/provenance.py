"""Where a result came from: command, git commit, device, wall time, library versions and
floating-point numerics.

Every committed result (a run's metrics, an experiment's CSV, a shipped checkpoint) has a
JSON sidecar built from :func:`provenance`, so a reader can tell how to reproduce it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from duel_tutorial.numerics import numerics

_LIBRARIES = ("duel-tutorial", "torch", "numpy", "gymnasium", "ale-py", "safetensors")


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checked-out commit, with ``+dirty`` if tracked files differ; ``None`` outside git.

    Without ``cwd``: the checkout this package was imported from, read once per process.
    The code a process runs is the code it imported, so a commit or an edit made on disk
    while it runs (a long training run, say) does not change what its results record.
    """
    if cwd is None:
        return _package_commit()
    return _read_commit(Path(cwd))


@functools.cache
def _package_commit() -> str | None:
    return _read_commit(Path(__file__).resolve().parent)


def _read_commit(cwd: Path) -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (``None`` if missing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str | None:
    """The processor's model name from ``/proc/cpuinfo`` (Linux), with the instruction
    sets that change a run's speed most (AMX, AVX512_BF16, AVX-512, AVX2); ``None``
    where it cannot be read. Wall-clock figures mean little without it."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith("flags")), [])
    isa = [label for flag, label in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512_BF16"),
                                     ("avx512f", "AVX-512"), ("avx2", "AVX2"))
           if flag in flags]
    if name is None:
        return None
    return f"{name} ({', '.join(isa) or 'no AVX2'}; {os.cpu_count()} CPUs)"


def device_description(device: torch.device | str | None = None) -> str:
    """A human-readable name of the device that produced a result, e.g. the GPU's name."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def provenance(
    *,
    command: list[str] | str | None = None,
    device: torch.device | str | None = None,
    wall_time_s: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON-serialisable record of how a result was produced.

    ``command`` defaults to this process's command line. ``extra`` fields (config, seeds,
    steps, ...) are stored as given and must be JSON-serialisable.
    """
    if command is None:
        command = [Path(sys.argv[0]).name, *sys.argv[1:]]
    record: dict[str, Any] = {
        "command": command if isinstance(command, str) else " ".join(command),
        "git_commit": git_commit(),
        "device": device_description(device),
        "cpu": cpu_model(),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "versions": library_versions(),
        "numerics": numerics(),
    }
    record.update(extra)
    json.dumps(record)  # fail here, not at write time, if extra is not serialisable
    return record


def write_provenance(path: str | Path, record: dict[str, Any]) -> None:
    """Write a provenance record as indented JSON."""
    Path(path).write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
