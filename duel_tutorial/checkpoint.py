"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint named ``NAME`` in a run directory is two files:

- ``NAME.safetensors``: the online and target networks (``online/...``, ``target/...``),
  the optimizer's tensors flattened to ``optimizer/state/<param>/<name>``, optionally the
  replay buffer (``replay/<field>``) and torch's RNG state (``rng/torch``). The sidecar
  is also stored in the file's metadata, so the one file is self-contained and is written
  atomically (a ``kill -9`` mid-save leaves the previous checkpoint intact).
- ``NAME.json``: the same sidecar, human-readable: format version, config, step,
  episode, metrics row count, network description (kind, class, observation shape,
  action count), numpy RNG states, optimizer hyperparameters, and provenance (git commit,
  library versions, device, wall time; see :mod:`duel_tutorial.provenance`).

The training loop writes ``last`` every ``checkpoint_interval`` steps and ``final`` at
the end. Loading never executes code: safetensors holds only tensors and a JSON header
(no pickle), so a corrupted or hostile file can only fail to load. Every mismatch between
a checkpoint and what it is loaded into is a one-line ``ValueError``, e.g. "checkpoint
has 2 actions, this environment has 3".
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from duel_tutorial.config import DQNConfig
from duel_tutorial.device import resolve_device
from duel_tutorial.model import make_network

FORMAT_VERSION = 1
SUFFIX = ".safetensors"


def checkpoint_path(run: str | Path, name: str = "final") -> Path:
    """The ``.safetensors`` file of a checkpoint.

    ``run`` is a run directory (then ``name``, e.g. ``"final"`` or ``"last"``, picks the
    checkpoint in it), a ``.safetensors`` file, or its ``.json`` sidecar.
    """
    run = Path(run)
    if run.is_dir():
        return run / f"{name}{SUFFIX}"
    if run.suffix == ".json":
        return run.with_suffix(SUFFIX)
    return run


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], sidecar: dict) -> Path:
    """Write ``tensors`` and ``sidecar`` atomically to ``path.safetensors`` and ``path.json``."""
    path = Path(path).with_suffix(SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(sidecar, indent=2)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: never shared
    save_file(tensors, str(tmp), metadata={"sidecar": text})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600 files; use the usual mode
    os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    json_tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    json_tmp.write_text(text + "\n")
    os.replace(json_tmp, path.with_suffix(".json"))
    return path


def load_checkpoint(
    path: str | Path, name: str = "final", device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, sidecar)`` of a checkpoint (see :func:`checkpoint_path` for ``path``).

    Reads with safetensors only (no pickle, no code execution); a missing, truncated or
    foreign file raises a one-line ``ValueError``.
    """
    file = checkpoint_path(path, name)
    if not file.is_file():
        raise ValueError(f"no checkpoint at {file} (expected a run directory with "
                         f"{name}{SUFFIX}, or a {SUFFIX} file)")
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error type for bad headers
        raise ValueError(f"{file} is not a readable safetensors checkpoint: "
                         f"{str(err).splitlines()[0]}") from None
    try:
        sidecar = json.loads(metadata["sidecar"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{file} has no duel_tutorial sidecar in its metadata; "
                         "it was not written by duel_tutorial.checkpoint") from None
    if sidecar.get("format") != FORMAT_VERSION:
        raise ValueError(f"{file} has checkpoint format {sidecar.get('format')!r}; "
                         f"this version of duel_tutorial reads format {FORMAT_VERSION}")
    return tensors, sidecar


# --- networks ---------------------------------------------------------------------------


def with_prefix(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"fc1.weight": t}`` -> ``{"online/fc1.weight": t}`` for ``prefix="online"``."""
    return {f"{prefix}/{k}": v for k, v in state.items()}


def strip_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix/``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def load_network_state(network: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``network`` after checking every key and shape (one-line errors)."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit {type(network).__name__}: missing {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(f"{what} tensor {key!r} has shape {tuple(state[key].shape)}, "
                             f"{type(network).__name__} expects {tuple(tensor.shape)}")
    network.load_state_dict(state)


def check_compatible(
    sidecar: dict[str, Any],
    *,
    network: str | None = None,
    hidden: int | None = None,
    obs_shape: tuple[int, ...] | None = None,
    n_actions: int | None = None,
) -> None:
    """Raise a one-line ``ValueError`` if a checkpoint's network differs from what is asked."""
    saved = sidecar["network"]
    if n_actions is not None and saved["n_actions"] != n_actions:
        raise ValueError(f"checkpoint has {saved['n_actions']} actions, "
                         f"this environment has {n_actions}")
    if obs_shape is not None and tuple(saved["obs_shape"]) != tuple(obs_shape):
        raise ValueError(f"checkpoint expects observations of shape {tuple(saved['obs_shape'])}, "
                         f"this environment gives {tuple(obs_shape)}")
    if network is not None and saved["kind"] != network:
        raise ValueError(f"checkpoint network is {saved['kind']!r}, config asks {network!r}")
    if hidden is not None and saved["hidden"] != hidden:
        raise ValueError(f"checkpoint network has hidden width {saved['hidden']}, "
                         f"config asks {hidden}")


# --- optimizer --------------------------------------------------------------------------


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer's ``state_dict`` into safetensors tensors plus a JSON part.

    Tensors (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``) become
    ``optimizer/state/<param index>/<name>``; plain numbers and ``param_groups``
    (learning rate, betas, ...) go into the returned dict.
    """
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/state/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    meta = {"class": type(optimizer).__name__, "param_groups": state["param_groups"],
            "scalars": scalars}
    json.dumps(meta)  # fail now, not when writing, if something is not serialisable
    return tensors, meta


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the flattened state into ``optimizer``."""
    if meta["class"] != type(optimizer).__name__:
        raise ValueError(f"checkpoint optimizer is {meta['class']}, "
                         f"this run uses {type(optimizer).__name__}")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[:2] == ["optimizer", "state"]:
            state.setdefault(int(parts[2]), {})[parts[3]] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    n_params = sum(len(g["params"]) for g in optimizer.state_dict()["param_groups"])
    n_saved = sum(len(g["params"]) for g in meta["param_groups"])
    if n_params != n_saved:
        raise ValueError(f"checkpoint optimizer has {n_saved} parameter tensors, "
                         f"this network has {n_params}")
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --- trained policies -------------------------------------------------------------------


def load_policy(
    run: str | Path, name: str = "final", device: torch.device | str | None = None
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The trained online network of a run, ready for greedy action selection.

    Returns ``(network, config, sidecar)``: the network in eval mode on ``device``
    (default: :func:`~duel_tutorial.device.default_device`), the run's
    :class:`~duel_tutorial.config.DQNConfig` and the checkpoint's sidecar. The config is
    validated as it is read (its ``env_id`` must be a plain gymnasium id: a file cannot
    make gymnasium import a module).
    """
    device = resolve_device("auto" if device is None else str(device))
    tensors, sidecar = load_checkpoint(run, name)
    file = checkpoint_path(run, name)
    network, config = network_from_sidecar(sidecar, file)
    load_network_state(network, strip_prefix("online", tensors), f"checkpoint {file}")
    return network.to(device).eval(), config, sidecar


def network_from_sidecar(sidecar: dict[str, Any], file: str | Path) -> tuple[nn.Module, DQNConfig]:
    """An untrained network of the shape a checkpoint's sidecar describes, and the run's
    config (validated as it is read); ``file`` names the checkpoint in errors."""
    try:
        config = DQNConfig.from_dict(sidecar["config"])  # checks env_id (__post_init__)
        saved = sidecar["network"]
        obs_shape, n_actions = tuple(saved["obs_shape"]), int(saved["n_actions"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{file}: its sidecar lacks a valid config or network description "
                         f"({type(err).__name__}: {err})") from None
    return make_network(config, obs_shape, n_actions), config


PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
"""Where the shipped agents live (package data): ``NAME.safetensors`` + ``NAME.json``."""

_PRETRAINED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def pretrained_path(name: str) -> Path:
    """The ``.safetensors`` file of the shipped agent ``name`` (a plain name)."""
    return _pretrained_file(name, SUFFIX)


def pretrained_names() -> list[str]:
    """The names of the shipped agents, e.g. ``["pong"]``."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob(f"*{SUFFIX}"))


def check_pretrained_name(name: str) -> str:
    """``name`` itself if it can name a shipped agent: lower-case letters, digits, ``_``
    and ``-``, starting with a letter or digit (no ``/``, no ``..``), else a ``ValueError``."""
    if not isinstance(name, str) or not _PRETRAINED_NAME.fullmatch(name):
        raise ValueError(f"a pretrained agent name is lower-case letters, digits, '_' and '-' "
                         f"(like 'pong'); got {name!r}; shipped: {pretrained_names()}")
    return name


def _pretrained_file(name: str, suffix: str) -> Path:
    """``PRETRAINED_DIR / (name + suffix)`` of a shipped agent; a one-line error otherwise."""
    path = PRETRAINED_DIR / f"{check_pretrained_name(name)}{suffix}"
    if not path.is_file():
        raise ValueError(f"no pretrained agent named {name!r}; shipped: {pretrained_names()}")
    return path


def load_pretrained(name: str = "pong", device: torch.device | str | None = None) -> nn.Module:
    """A shipped trained agent: its online network in eval mode on ``device``.

    ``load_pretrained("pong")`` is the dueling network trained on Pong that the book
    ships (``duel_tutorial/pretrained/pong.safetensors``); it maps frames
    ``(B, 4, 84, 84) uint8`` (the evaluation preprocessing of
    :func:`duel_tutorial.envs.make_atari_env`) to Q-values ``(B, 6)``. How it was trained
    and how it scored is in ``pong.json`` (:func:`pretrained_card`).
    """
    network, _, _ = load_policy(_pretrained_file(name, SUFFIX), device=device)
    return network


def pretrained_card(name: str = "pong") -> dict[str, Any]:
    """The sidecar of a shipped agent: config, steps, frames, wall time, device, versions,
    git commit of the training run, and its evaluation returns."""
    return json.loads(_pretrained_file(name, ".json").read_text())
