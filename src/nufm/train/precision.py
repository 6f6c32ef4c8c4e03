"""The precision of a run's forward passes: bf16 autocast only where the machine has it natively.

Owns :func:`native_bf16`, :func:`resolve_autocast` and :func:`default_dtypes`. bf16 autocast
trains about 2.2x faster than fp32 on a CPU whose matrix products PyTorch hands to oneDNN in
bf16 (x86 with AVX-512 or AMX; ARM with the bf16 extension) and on GPUs with bf16. Elsewhere
(x86 with AVX2 only, as in many laptops and some cloud VMs) PyTorch falls back to a scalar bf16
product: on one AVX2 core of an AMD EPYC a (1024, 1024) @ (1024, 1024) product ran at 0.57
GFLOP/s in bf16 against 61 in fp32, and a ``mae-fast-cpu`` step 10x slower than in fp32. So
``train.bf16`` asks for bf16 where it helps and runs fp32 where it would not, and says which in
the log.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def _cpu_has_native_bf16() -> bool:
    """True when this CPU's bf16 matrix products run in oneDNN (not the scalar fallback)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products on ``device`` are at least as fast as fp32 ones."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return _cpu_has_native_bf16()


def resolve_autocast(bf16: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: bf16 autocast when asked and native, else none.

    Logs the precision once per call (a run calls it once), and why bf16 was not used.
    """
    if not bf16:
        log.info("precision: fp32")
        return contextlib.nullcontext()
    if not native_bf16(device):
        log.warning(
            "precision: fp32, although train.bf16 is set: this %s has no native bf16 matrix "
            "products (no AVX-512 / AMX / ARM bf16 for oneDNN), where bf16 autocast runs about "
            "10x slower than fp32 (nufm.train.precision)",
            device.type.upper(),
        )
        return contextlib.nullcontext()
    log.info("precision: bf16 autocast")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def inference_dtype(bf16: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run's inference passes (val, test, frozen features): bf16 when
    the run trains in it (``bf16``) and ``device`` has native bf16 products, else None (full
    precision), the rule :func:`resolve_autocast` applies to the training steps."""
    return torch.bfloat16 if bf16 and native_bf16(device) else None


def default_dtypes() -> tuple[str, ...]:
    """The precisions worth measuring on this CPU (benchmarks): fp32, plus bf16 where native."""
    return ("fp32", "bf16") if native_bf16(torch.device("cpu")) else ("fp32",)


__all__ = ["default_dtypes", "inference_dtype", "native_bf16", "resolve_autocast"]
