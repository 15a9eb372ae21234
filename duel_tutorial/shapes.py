"""Shape arithmetic for convolution stacks.

A conv (or pooling) layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d``
maps a side of ``n`` pixels to ``floor((n + 2p - d(k - 1) - 1) / s) + 1``, which for
``d = 1`` is the familiar ``floor((n + 2p - k) / s) + 1``. The receptive field grows by
``d(k - 1)`` times the current jump (the input-pixel distance between neighbouring
outputs), and the jump is multiplied by ``s``:

    r_out = r_in + d (k - 1) j_in,    j_out = j_in s,    r_0 = j_0 = 1.

For the Nature DQN trunk on 84x84 input: 84 -> 20 -> 9 -> 7, receptive fields 8, 20, 36.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                nn.Identity, nn.Dropout, nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)


def _pair(x: int | tuple[int, ...]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[-1]))


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output side of a conv or pooling layer.

    ``floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1``; with
    ``dilation = 1`` this is ``floor((size + 2 padding - kernel) / stride) + 1``.

    >>> conv_output_size(84, kernel=8, stride=4)
    20
    """
    for name, value, least in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                               ("padding", padding, 0), ("dilation", dilation, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(
            f"kernel spans {span} pixels but the padded input has only {size + 2 * padding} "
            f"(size={size}, padding={padding})"
        )
    return math.floor((size + 2 * padding - span) / stride) + 1


@dataclass(frozen=True)
class LayerShape:
    """One row of :func:`describe_conv_stack`.

    ``receptive_field`` is the side, in input pixels, of the patch one output unit sees;
    ``None`` once the layer sees the whole input (after ``Flatten``/``Linear``).
    """

    name: str
    layer: str
    output_shape: tuple[int, ...]
    params: int
    receptive_field: int | None
    jump: int | None


def describe_conv_stack(
    stack: nn.Module, input_shape: tuple[int, int, int] = (4, 84, 84)
) -> list[LayerShape]:
    """Each layer's output shape, parameter count and receptive field, walking a conv stack.

    Args:
        stack: an ``nn.Sequential`` (nested ones are walked in order) of ``Conv2d``,
            ``MaxPool2d``/``AvgPool2d``, element-wise layers (``ReLU`` ...), ``Flatten`` and
            ``Linear``: e.g. ``DuelDQN().conv``.
        input_shape: ``(C, H, W)`` of one observation, without the batch axis.

    The shapes come from :func:`conv_output_size`, not from running the network, so the
    table teaches the arithmetic; the tests check it against torch.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W); got {input_shape!r}")
    shape: tuple[int, ...] = tuple(input_shape)
    rf: int | None = 1
    jump: int | None = 1
    rows: list[LayerShape] = []
    leaves = [(n, m) for n, m in stack.named_modules() if not list(m.children())]
    for name, layer in leaves:
        kind = type(layer).__name__
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            if len(shape) != 3:
                raise ValueError(f"{name} ({kind}) needs (C, H, W) input; got {shape}")
            k, s, p = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
            d = _pair(getattr(layer, "dilation", 1))
            if isinstance(layer, nn.Conv2d) and shape[0] != layer.in_channels:
                raise ValueError(f"{name} expects {layer.in_channels} channels; got {shape[0]}")
            if k[0] != k[1] or s[0] != s[1]:
                raise ValueError(f"{name}: only square kernels and strides are supported")
            channels = layer.out_channels if isinstance(layer, nn.Conv2d) else shape[0]
            shape = (channels, *(conv_output_size(n, k[i], s[i], p[i], d[i])
                                 for i, n in enumerate(shape[1:])))
            assert rf is not None and jump is not None
            rf, jump = rf + d[0] * (k[0] - 1) * jump, jump * s[0]
        elif isinstance(layer, nn.Flatten):
            shape, rf, jump = (math.prod(shape),), None, None
        elif isinstance(layer, nn.Linear):
            if shape != (layer.in_features,):
                raise ValueError(f"{name} expects ({layer.in_features},) input; got {shape}")
            shape, rf, jump = (layer.out_features,), None, None
        elif not isinstance(layer, _ELEMENTWISE):
            raise ValueError(f"{name}: cannot describe a {kind} layer")
        params = sum(p.numel() for p in layer.parameters())
        rows.append(LayerShape(name, kind, shape, params, rf, jump))
    return rows


def layer_table(rows: list[LayerShape]) -> str:
    """Format :func:`describe_conv_stack` rows as a fixed-width text table."""
    lines = [f"{'layer':<12}{'output':>16}{'params':>11}{'receptive field':>17}"]
    for r in rows:
        field = "all" if r.receptive_field is None else f"{r.receptive_field}x{r.receptive_field}"
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name + ' ' + r.layer:<12}{shape:>16}{r.params:>11,}{field:>17}")
    lines.append(f"{'total':<12}{'':>16}{sum(r.params for r in rows):>11,}")
    return "\n".join(lines)
