"""Named inpainting masks for any event shape, and masks read from files.

A mask is True where the event is observed. Named masks act on the last axis (the columns of
an image, the coordinates of a flat point) or on the last two (``center``, ``top``,
``bottom``), and are the same for every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

NAMED = ("left", "right", "top", "bottom", "center", "random")  #: the named masks


def named_mask(name: str, event_shape: Sequence[int], seed: int = 0) -> Tensor:
    """``left``/``right``: observe the first/second half of the last axis (rounded up);
    ``top``/``bottom``: of the second-to-last axis; ``center``: hide the central half of the
    last two axes; ``random``: observe each entry with probability 1/2 (from ``seed``)."""
    shape = tuple(int(s) for s in event_shape)
    if name not in NAMED:
        raise ValueError(
            f"mask={name!r} is not a named mask; choose one of {', '.join(NAMED)} or a file"
        )
    if name in ("top", "bottom", "center") and len(shape) < 2:
        raise ValueError(f"mask={name} needs events with two axes or more, got {shape}")
    m = torch.zeros(shape, dtype=torch.bool)
    if name == "random":
        g = torch.Generator().manual_seed(seed)
        m = torch.rand(shape, generator=g) < 0.5
        m.reshape(-1)[0] = True  # never empty
        return m
    W = shape[-1]
    if name in ("left", "right"):
        half = (W + 1) // 2
        m[..., :half] = True
        return m if name == "left" else ~m if W > 1 else m
    H = shape[-2]
    if name in ("top", "bottom"):
        half = (H + 1) // 2
        m[..., :half, :] = True
        return m if name == "top" else ~m if H > 1 else m
    m[...] = True
    m[..., H // 4 : H - H // 4, W // 4 : W - W // 4] = False
    return m if m.any() else ~m


def read_mask(path: str | Path, event_shape: Sequence[int]) -> Tensor:
    """A mask from ``.npy``, ``.npz`` (its ``mask`` array or its only one) or an image file
    (nonzero pixels observed; broadcast over the channels); its shape must fit the events."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask={str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        m = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if "mask" not in keys and len(keys) != 1:
                raise ValueError(f"mask={str(path)!r} holds {keys}: name the array 'mask'")
            m = f["mask" if "mask" in keys else keys[0]]
    else:
        from PIL import Image

        try:
            m = np.asarray(Image.open(path).convert("L"))
        except OSError as err:
            raise ValueError(f"mask={str(path)!r} is not a readable image or .npy/.npz") from err
    m = torch.as_tensor(np.asarray(m) != 0)
    shape = tuple(int(s) for s in event_shape)
    if tuple(m.shape) != shape:
        try:
            m = m.expand(shape).clone()
        except RuntimeError:
            raise ValueError(
                f"mask={str(path)!r} has shape {tuple(m.shape)}, but the events have shape {shape}"
            ) from None
    return m


def make_mask(spec: str, event_shape: Sequence[int], seed: int = 0) -> Tensor:
    """A named mask (:data:`NAMED`) or one read from the file ``spec``."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"mask must be one of {', '.join(NAMED)} or a file, got {spec!r}")
    if spec in NAMED:
        return named_mask(spec, event_shape, seed)
    if not Path(spec).is_file():
        raise ValueError(
            f"mask={spec!r} is not a named mask; choose one of {', '.join(NAMED)}, or give an "
            ".npy/.npz/image file that exists"
        )
    return read_mask(spec, event_shape)
