"""Saliency maps of the two streams, as in Wang et al. (2016), Figure 2.

Which pixels does each stream look at? Following Simonyan et al. (2013), the saliency of
a scalar output with respect to the input is the absolute value of its gradient:

- value saliency: ``|d V(s) / d s|``,
- advantage saliency: ``|d A(s, a*) / d s|`` with ``a* = argmax_a A(s, a)``, the action
  the greedy policy takes (``argmax_a Q = argmax_a A`` under every aggregation).

:func:`saliency_maps` computes both, for a batch, with one forward and two backward passes.

Choices, and why:

- **Input units.** The derivative is taken with respect to the float input the network
  computes with: ``uint8`` frames are first scaled to ``[0, 1]`` (the network's own
  ``/ 255``). So uint8 frames and the same frames given as ``frames / 255`` give the same
  maps; the derivative with respect to raw pixel values is the map divided by 255.
- **Per frame, then reduced.** A frame stack has 4 frames, so each map is ``(B, 4, 84,
  84)``: how strongly each pixel of each frame moves the output.
  :func:`reduce_frames` makes one ``84 x 84`` map: ``"max"`` over the frames (Simonyan et
  al. take the max over colour channels; the default), ``"sum"`` (additive, so the share
  of saliency mass in a region, :func:`saliency_share`, is a share of the whole
  gradient's L1 norm) or ``"newest"`` (the last frame only).
- **Normalisation for display** (:func:`saliency_overlay`): each map is divided by
  ``vmax``, by default its own maximum, so the most salient pixel is fully red; pass one
  ``vmax`` for two maps to compare them on the same scale. Shares need no normalisation.
- **Eval mode.** The maps are computed with the network in eval mode; afterwards every
  module's own training flag is restored, the parameters' ``.grad`` are untouched (only the
  input's gradient is computed, with ``torch.autograd.grad``) and ``requires_grad`` too.
- **Batched.** Entry ``b``'s outputs depend only on ``obs[b]`` (no batch norm), so the
  gradient of the batch's sum is every entry's own gradient.

For Pong, :func:`find_ball` and :func:`find_paddle` locate the ball and the agent's
paddle (the right, green one) by their pixel values, in a preprocessed ``84 x 84`` frame
or in a raw ``210 x 160`` screen (RGB or grayscale), and return a :class:`Box`;
:func:`saliency_share` measures how much of a map lies in such a box.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

Reduction = Literal["max", "sum", "newest"]
REDUCTIONS: tuple[Reduction, ...] = ("max", "sum", "newest")

# Pong's screen, measured on ALE Pong v5 (checked by tests/test_saliency.py):
RAW_SHAPE = (210, 160)  # raw Atari screen, rows x columns
_PLAYFIELD_ROWS = (34, 194)  # raw rows between the white walls (rows 24-33 and 194-209)
_WALL_ROWS = ((24, 34), (194, 210))  # raw rows of the top and bottom walls
_PADDLE_COLUMNS = (140, 144)  # raw columns of the agent's (right, green) paddle
_OPPONENT_COLUMNS = (16, 20)  # raw columns of the opponent's (left, orange) paddle
_BALL_RGB, _BALL_GRAY = (236, 236, 236), 236  # the ball (and the walls)
_PADDLE_RGB, _PADDLE_GRAY = (92, 186, 92), 147  # the agent's paddle
_BRIGHTEST_PADDLE_GRAY = 148  # the opponent's paddle, RGB (213, 130, 74)
_BACKGROUND_GRAY = 87  # the court, RGB (144, 72, 17)
_TOLERANCE = 10  # grey levels: a preprocessed pixel this far from the empty court is an object


class SaliencyMaps(NamedTuple):
    """Per-frame saliency maps of a batch, detached, on the network's device.

    ``value``: ``|dV/ds|``, ``advantage``: ``|dA(s, a*)/ds|``, both shaped like the
    observations, e.g. ``(B, 4, 84, 84)`` float; ``action``: ``a*`` per entry, ``(B,)``.
    """

    value: torch.Tensor
    advantage: torch.Tensor
    action: torch.Tensor


@contextlib.contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """Put ``net`` in eval mode, then give every submodule its own training flag back."""
    flags = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _check_net(net: nn.Module) -> torch.Tensor:
    """Return a parameter of ``net`` (device and dtype) after checking it has ``streams``."""
    if not callable(getattr(net, "streams", None)):
        raise TypeError(
            "net must be a dueling network with streams(obs) -> (value, advantage), like "
            f"DuelDQN or DuelingQNetwork; got {type(net).__name__}, which has no streams"
        )
    param = next(net.parameters(), None)
    if param is None:
        raise ValueError(f"net must have parameters; got {type(net).__name__} with none")
    return param


def _inputs(obs: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``obs`` as floats on ``param``'s device and dtype, uint8 scaled to [0, 1], a leaf."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(
            "obs must be a torch.Tensor of shape (B, ...), e.g. (B, 4, 84, 84); "
            f"got {type(obs).__name__} (wrap it with torch.as_tensor)"
        )
    if obs.dim() < 2:
        raise ValueError(
            f"obs must be a batch (B, ...), e.g. (B, 4, 84, 84); got {tuple(obs.shape)}"
        )
    if obs.dtype == torch.uint8:
        # pixels in {0, ..., 255} -> [0, 1], as the network scales them
        x = obs.to(param.device, param.dtype) / 255.0
    elif obs.is_floating_point():
        x = obs.to(param.device, param.dtype)
    else:
        raise TypeError(f"obs must be uint8 frames or floating point; got {obs.dtype}")
    return x.detach().clone().requires_grad_(True)


def saliency_maps(
    net: nn.Module, obs: torch.Tensor, action: torch.Tensor | None = None
) -> SaliencyMaps:
    """``|dV/ds|`` and ``|dA(s, a*)/ds|`` for a batch of observations.

    Args:
        net: a dueling network with ``streams(obs) -> (value (B, 1), advantage (B, n))``
            (``DuelDQN``, ``DuelingQNetwork``, ``MLPDuelingQNetwork``).
        obs: ``(B, 4, 84, 84)`` uint8 or float frames (or ``(B, input_size)`` vectors for
            an MLP), on any device: they are moved to the network's.
        action: ``(B,)`` actions whose advantage to differentiate; by default
            ``a* = argmax_a A(s, a)``, the greedy action.

    Returns:
        :class:`SaliencyMaps` with per-frame maps shaped like ``obs`` (float, with respect
        to the [0, 1]-scaled input) and the differentiated actions.
    """
    param = _check_net(net)
    with torch.inference_mode(False), torch.enable_grad(), _eval_mode(net):
        x = _inputs(obs, param)
        batch = x.shape[0]
        value, advantage = net.streams(x)
        if value.shape != (batch, 1) or advantage.dim() != 2 or advantage.shape[0] != batch:
            hint = " (unbatched obs? add a batch axis: obs[None])" if value.dim() == 1 else ""
            raise ValueError(
                "obs must be a batch (B, ...) for which net.streams returns value (B, 1) and "
                f"advantage (B, n_actions); got value {tuple(value.shape)} and advantage "
                f"{tuple(advantage.shape)} for obs {tuple(obs.shape)}{hint}"
            )
        if action is None:
            # a* = argmax_a A(s, a)
            chosen = advantage.detach().argmax(dim=1)
        else:
            chosen = torch.as_tensor(action, device=advantage.device).long().reshape(-1)
            if chosen.shape != (batch,):
                raise ValueError(f"action must have shape ({batch},); got {tuple(chosen.shape)}")
        # A(s, a*): (B, 1)
        chosen_advantage = advantage.gather(1, chosen[:, None])
        # each entry depends only on its own input, so d(sum_b V_b)/ds_b = dV_b/ds_b
        (grad_value,) = torch.autograd.grad(value.sum(), x, retain_graph=True)
        (grad_advantage,) = torch.autograd.grad(chosen_advantage.sum(), x)
    return SaliencyMaps(grad_value.abs(), grad_advantage.abs(), chosen)


def reduce_frames(maps: torch.Tensor, how: Reduction = "max") -> torch.Tensor:
    """One map per observation: ``(B, C, H, W) -> (B, H, W)`` (or ``(C, H, W) -> (H, W)``).

    ``how``: ``"max"`` over the C frames (Simonyan et al. 2013, over colour channels),
    ``"sum"`` (L1 over the frames; additive) or ``"newest"`` (the last frame only).
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor (B, C, H, W) or (C, H, W); got {shape}")
    if how == "max":
        return maps.amax(dim=-3)
    if how == "sum":
        return maps.sum(dim=-3)
    if how == "newest":
        return maps[..., -1, :, :]
    raise ValueError(f"how must be one of {REDUCTIONS}; got {how!r}")


def _numpy(x: ArrayLike | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    """A grayscale ``(H, W)`` frame in [0, 1] from ``(H, W)`` or RGB ``(H, W, 3)``."""
    if frame.ndim == 3 and frame.shape[-1] == 3:
        # luminance Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)
        gray = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif frame.ndim == 2:
        gray = frame.astype(np.float64)
    else:
        raise ValueError(f"frame must be grayscale (H, W) or RGB (H, W, 3); got {frame.shape}")
    if frame.dtype == np.uint8:
        gray = gray / 255.0  # {0, ..., 255} -> [0, 1]
    return np.clip(gray, 0.0, 1.0)


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(h, w)`` map to ``shape`` (no change if it already fits)."""
    if image.shape == shape:
        return image
    t = torch.as_tensor(image, dtype=torch.float64)[None, None]
    return torch.nn.functional.interpolate(t, size=shape, mode="bilinear")[0, 0].numpy()


def saliency_overlay(
    frame: ArrayLike | torch.Tensor,
    saliency: ArrayLike | torch.Tensor,
    vmax: float | None = None,
) -> np.ndarray:
    """The paper's picture: the frame in green and blue, the saliency in red.

    Args:
        frame: the frame to draw on: ``(H, W)`` grayscale (uint8, or float in [0, 1]), e.g.
            ``obs[-1]``, or an RGB ``(H, W, 3)`` screen, e.g. the raw ``210 x 160``
            one, which is converted to luminance.
        saliency: one non-negative map ``(h, w)``, e.g. ``reduce_frames(maps.value)[b]``;
            resized bilinearly to ``(H, W)`` when the frame is larger.
        vmax: the saliency shown fully red; default: the map's maximum.

    Returns:
        ``(H, W, 3)`` float array in [0, 1] for ``plt.imshow``: red ``clip(saliency /
        vmax, 0, 1)``, green = blue = the grayscale frame.
    """
    gray = _to_gray(_numpy(frame))
    sal = _numpy(saliency).astype(np.float64)
    if sal.ndim != 2:
        raise ValueError(f"saliency must be one map (h, w); got shape {sal.shape} "
                         "(reduce the frames with reduce_frames and pick one entry)")
    if (sal < 0).any():
        raise ValueError(f"saliency must be non-negative; got a minimum of {sal.min():.3g}")
    sal = np.clip(_resize(sal, gray.shape), 0.0, None)
    top = float(sal.max()) if vmax is None else float(vmax)
    red = np.clip(sal / top, 0.0, 1.0) if top > 0 else np.zeros_like(sal)
    return np.stack([red, gray, gray], axis=-1).astype(np.float32)


class Box(NamedTuple):
    """Rows ``top:bottom`` and columns ``left:right`` of an image (half-open, like slices)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def center(self) -> tuple[float, float]:
        """``(row, column)`` of the box's centre, in pixels."""
        return (self.top + self.bottom - 1) / 2, (self.left + self.right - 1) / 2

    def grow(self, margin: int, shape: tuple[int, int]) -> Box:
        """The box with ``margin`` pixels more on each side, clipped to an image of ``shape``."""
        return Box(max(self.top - margin, 0), max(self.left - margin, 0),
                   min(self.bottom + margin, shape[0]), min(self.right + margin, shape[1]))

    def rescale(self, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> Box:
        """The pixels of a ``to_shape`` image that overlap this box of a ``from_shape`` one.

        E.g. ``box.rescale((210, 160), (84, 84))`` maps a raw-screen box to the
        preprocessed frame.
        """
        fy, fx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
        return Box(int(np.floor(self.top * fy)), int(np.floor(self.left * fx)),
                   int(np.ceil(self.bottom * fy)), int(np.ceil(self.right * fx)))

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """A boolean ``shape`` array, True inside the box."""
        mask = np.zeros(shape, dtype=bool)
        mask[self.top:self.bottom, self.left:self.right] = True
        return mask


def saliency_share(
    saliency: ArrayLike | torch.Tensor, region: Box | ArrayLike
) -> float | np.ndarray:
    """Share of the saliency mass inside ``region``: ``sum(map * mask) / sum(map)``.

    Args:
        saliency: non-negative map(s) ``(H, W)`` or ``(B, H, W)``.
        region: a :class:`Box`, or a boolean mask ``(H, W)`` or ``(B, H, W)``.

    Returns:
        a float in [0, 1] for one map, a ``(B,)`` array for a batch; NaN for an all-zero
        map. Compare it with the region's share of the pixels, ``mask.mean()``: what a
        map that looks everywhere equally would give.
    """
    sal = _numpy(saliency).astype(np.float64)
    if sal.ndim not in (2, 3):
        raise ValueError(f"saliency must have shape (H, W) or (B, H, W); got {sal.shape}")
    if (sal < 0).any():
        raise ValueError(f"saliency must be non-negative; got a minimum of {sal.min():.3g}")
    mask = region.mask(sal.shape[-2:]) if isinstance(region, Box) else _numpy(region)
    if mask.dtype != bool or mask.shape not in (sal.shape[-2:], sal.shape):
        raise ValueError(
            f"region must be a Box or a bool mask of shape {sal.shape[-2:]} or {sal.shape}; "
            f"got {mask.dtype} {mask.shape}"
        )
    inside = (sal * mask).sum(axis=(-2, -1))
    total = sal.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    return float(share) if sal.ndim == 2 else share


# --- Pong: where are the ball and the agent's paddle? ------------------------------------


def _frame(frame: ArrayLike | torch.Tensor) -> np.ndarray:
    """Check a Pong frame: preprocessed (84, 84), raw grayscale (210, 160) or RGB (210, 160, 3)."""
    f = _numpy(frame)
    if f.shape not in ((84, 84), RAW_SHAPE, (*RAW_SHAPE, 3)):
        stack = f.ndim == 3 and f.shape[-2:] == (84, 84)
        hint = " (a frame stack? pass its newest frame, obs[-1])" if stack else ""
        raise ValueError(
            "frame must be a preprocessed (84, 84) frame or a raw (210, 160) or "
            f"(210, 160, 3) screen; got shape {f.shape}{hint}"
        )
    if f.dtype != np.uint8:
        raise TypeError(f"frame must be uint8 pixels; got {f.dtype}")
    return f


def _bounding_box(mask: np.ndarray) -> Box | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return Box(int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)


def _raw_mask(frame: np.ndarray, rgb: tuple[int, int, int], gray: int) -> np.ndarray:
    """Pixels of one colour in the raw screen's playfield (not in the score or the walls)."""
    top, bottom = _PLAYFIELD_ROWS
    play = frame[top:bottom]
    mask = np.zeros(frame.shape[:2], dtype=bool)
    if frame.ndim == 3:
        mask[top:bottom] = (
            (play[..., 0] == rgb[0]) & (play[..., 1] == rgb[1]) & (play[..., 2] == rgb[2])
        )
    else:
        mask[top:bottom] = play == gray
    return mask


@functools.cache
def _court_84(playfield_gray: int) -> np.ndarray:
    """A preprocessed frame of the court with its playfield all ``playfield_gray``.

    The raw court resized as the env does (OpenCV's pixel-area averaging). With the
    background grey it is the empty court; with the paddle's grey, the brightest each
    pixel can be without the ball (the rows next to the walls blend them in).
    """
    import cv2  # the env's own resize

    court = np.full(RAW_SHAPE, playfield_gray, dtype=np.uint8)
    for top, bottom in _WALL_ROWS:
        court[top:bottom] = _BALL_GRAY
    court[: _WALL_ROWS[0][0]] = _BACKGROUND_GRAY  # above the top wall: the score
    return cv2.resize(court, (84, 84), interpolation=cv2.INTER_AREA).astype(np.int16)


def _span_84(raw: tuple[int, int], raw_size: int) -> slice:
    """The preprocessed rows (or columns) that overlap raw rows ``raw[0]:raw[1]``."""
    box = Box(raw[0], 0, raw[1], 1).rescale((raw_size, 1), (84, 1))
    return slice(box.top, box.bottom)


def _objects_84(frame: np.ndarray) -> np.ndarray:
    """Pixels of a preprocessed frame's playfield that differ from the empty court."""
    objects = np.abs(frame.astype(np.int16) - _court_84(_BACKGROUND_GRAY)) > _TOLERANCE
    rows = _span_84(_PLAYFIELD_ROWS, RAW_SHAPE[0])
    outside = np.ones(objects.shape, dtype=bool)
    outside[rows] = False
    objects[outside] = False
    return objects


def _bright_84(frame: np.ndarray) -> np.ndarray:
    """Pixels of a preprocessed frame brighter than a paddle can make them: the ball's."""
    return frame.astype(np.int16) > _court_84(_BRIGHTEST_PADDLE_GRAY) + _TOLERANCE


def find_paddle(frame: ArrayLike | torch.Tensor) -> Box | None:
    """The agent's (right, green) paddle in a Pong frame, or None when it is not found.

    ``frame``: a preprocessed ``(84, 84)`` uint8 frame (e.g. ``obs[-1]``), or a raw
    ``(210, 160)`` grayscale or ``(210, 160, 3)`` RGB screen. In a raw screen the paddle is
    exactly its colour. In a preprocessed one (where both paddles have the same grey) it
    is a vertical run of rows in the paddle's columns whose pixels differ from the empty
    court but are not brighter than a paddle (the ball is): the run with the most rows
    of exactly the paddle's grey in its middle column. The box is in the frame's own
    pixels.
    """
    f = _frame(frame)
    if f.shape != (84, 84):
        return _bounding_box(_raw_mask(f, _PADDLE_RGB, _PADDLE_GRAY))
    cols = _span_84(_PADDLE_COLUMNS, RAW_SHAPE[1])
    rows = (_objects_84(f) & ~_bright_84(f))[:, cols].any(axis=1)  # (84,)
    # rows whose middle column (inside the paddle's raw columns) has the paddle's grey
    middle = (cols.start + cols.stop) // 2
    solid = np.abs(f[:, middle].astype(np.int16) - _court_84(_PADDLE_GRAY)[:, middle])
    solid = rows & (solid <= _TOLERANCE)
    # runs of rows; the paddle is the run with the most solid rows (then the longest):
    # what is left of a ball passing by blends with the court, it is not solid
    runs, start = [], None
    for r, on in enumerate([*rows, False]):
        if on and start is None:
            start = r
        elif not on and start is not None:
            runs.append((int(solid[start:r].sum()), r - start, start))
            start = None
    if not runs:
        return None
    _, length, top = max(runs, key=lambda run: (run[0], run[1], -run[2]))
    return Box(top, cols.start, top + length, cols.stop)


def find_ball(frame: ArrayLike | torch.Tensor) -> Box | None:
    """The ball in a Pong frame, or None when it is not on the screen (between points).

    ``frame`` as in :func:`find_paddle`. In a raw screen the ball is exactly its colour
    inside the playfield (the walls share it). In a preprocessed frame it is every pixel
    that differs from the empty court outside the two paddles' columns, and the pixels
    in those columns that are brighter than a paddle can make them. The preprocessed
    frame is the max of two emulator frames, so its box covers the ball's last two
    positions.
    """
    f = _frame(frame)
    if f.shape != (84, 84):
        return _bounding_box(_raw_mask(f, _BALL_RGB, _BALL_GRAY))
    paddles = np.zeros(f.shape, dtype=bool)
    for columns in (_PADDLE_COLUMNS, _OPPONENT_COLUMNS):
        paddles[:, _span_84(columns, RAW_SHAPE[1])] = True
    return _bounding_box(_objects_84(f) & (~paddles | _bright_84(f)))
