"""Reading the released-model reference files (``shared/reference/released-models``): the
model config in the safetensors metadata, the reduced model's weights and its stored tokens."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nufm.models.released.polarmae import PolarMAETokens


def reference_file(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the JSON model config of the file, every stored tensor)."""
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["config"])
    return meta, load_file(str(path))


def reference_state(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``state_dict.*`` tensors under the reference key names."""
    return {k.removeprefix("state_dict."): v for k, v in stored.items() if "state_dict." in k}


def stored_tokens(stored: dict[str, torch.Tensor]) -> PolarMAETokens:
    """The PoLAr-MAE reference's stored tokens (groups, masks, centres, indices)."""
    return PolarMAETokens(
        stored["tokens.groups"],
        stored["tokens.point_mask"],
        stored["tokens.centers"],
        stored["tokens.grouping_idx"],
        stored["tokens.emb_mask"],
    )
