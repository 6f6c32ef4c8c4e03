"""Backend dispatch shared by the geometry kernels (reference PyTorch vs numba/scipy CPU paths).

Every kernel in ``nufm.geometry`` has a plain-PyTorch reference ("torch": any device, the test
oracle and the GPU path) and, where one exists, a fast CPU path ("numba" or "scipy"). "auto"
picks the fast path for CPU tensors and the reference otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def resolve_backend(backend: str, device: torch.device, fast: str, op: str) -> str:
    """Return "torch" or ``fast`` for ``backend`` in {"auto", "torch", fast}.

    Args:
        backend: the caller's choice.
        device: device of the inputs; "auto" picks ``fast`` only on CPU.
        fast: name of the op's fast CPU backend ("numba" or "scipy").
        op: name of the op, for error messages.
    """
    match backend:
        case "auto":
            return fast if device.type == "cpu" else "torch"
        case "torch":
            return "torch"
        case _ if backend == fast:
            if device.type != "cpu":
                raise ValueError(f"{op}: backend {fast!r} needs CPU tensors, got {device}")
            return fast
        case _:
            raise ValueError(
                f"{op}: unknown backend {backend!r}; expected 'auto', 'torch' or {fast!r}"
            )


def check_packed(coord: Tensor, offset: Tensor, op: str, name: str = "coord") -> None:
    """Validate a packed (N, 3) point tensor against its (B,) int64 exclusive-end offsets."""
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"{op}: {name} must be (N, 3), got {tuple(coord.shape)}")
    if offset.ndim != 1 or offset.dtype != torch.int64:
        raise ValueError(
            f"{op}: {name} offset must be a (B,) int64 tensor, got "
            f"{tuple(offset.shape)} {offset.dtype}"
        )
    end = int(offset[-1]) if offset.numel() else 0
    if end != coord.shape[0]:
        raise ValueError(f"{op}: {name} offset ends at {end} but {name} has {coord.shape[0]} rows")
    if not coord.is_floating_point() or not bool(torch.isfinite(coord).all()):
        raise ValueError(f"{op}: {name} must be a finite floating-point tensor ({coord.dtype})")
    if offset.numel() and bool((torch.diff(offset, prepend=offset.new_zeros(1)) < 0).any()):
        raise ValueError(f"{op}: {name} offset must be non-decreasing, got {offset.tolist()}")


def to_numpy(x: Tensor) -> np.ndarray:
    """Contiguous numpy view of a CPU tensor (no copy when already contiguous)."""
    return x.detach().contiguous().numpy()
