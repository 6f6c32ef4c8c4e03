"""Tiny encoders and preprocessed synthetic events for the task tests (imported by name)."""

from __future__ import annotations

import numpy as np

from nufm.data.event import Event
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import Preprocess
from nufm.models.encoders import TokenViTConfig
from nufm.models.ptv3 import PTv3Config
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import ViTConfig
from nufm.tasks.event_task import AddEventTargets


def tiny_vit() -> TokenViTConfig:
    """Tokenizer + 2-block ViT, D = 16, on feat = [xyz, log energy]."""
    return TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=16,
            group_max_points=8,
            group_upscale_points=16,
            pointnet_dims=(16, 16, 16),
            pos_hidden=16,
        ),
        vit=ViTConfig(embed_dim=16, depth=2, num_heads=2, drop_path=0.0, attn_drop=0.0),
    )


def tiny_ptv3() -> PTv3Config:
    """Two-stage PTv3 with one block per stage, output width 8."""
    return PTv3Config(
        stride=(2,),
        enc_depths=(1, 1),
        enc_channels=(8, 16),
        enc_num_head=(1, 2),
        enc_patch_size=(16, 16),
        dec_depths=(1,),
        dec_channels=(8,),
        dec_num_head=(1,),
        dec_patch_size=(16,),
        grid_size=1.0 / 665.1,
        drop_path=0.0,
    )


ENCODERS = {"vit": tiny_vit, "ptv3": tiny_ptv3}


def make_events(n: int, seed: int = 0, **kw: object) -> list[Event]:
    """Preprocessed synthetic events (threshold 0, feat (N, 4)) with event targets added."""
    pre = Preprocess(energy_threshold=0.0).transforms(augment=[AddEventTargets()])
    raw = [synthetic_event(seed + i, **kw) for i in range(n)]  # type: ignore[arg-type]
    return [pre(e, np.random.default_rng(seed + i)) for i, e in enumerate(raw)]
