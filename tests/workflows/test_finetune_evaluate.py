"""`nufm finetune` + `nufm evaluate` on a non-semseg task (the task name is no preset prefix)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nufm.config import FinetuneConfig
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.models.encoders import TokenViTConfig
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import ViTConfig
from nufm.presets import PRESETS
from nufm.workflows.finetune import evaluate_run, run_finetune


def test_cluster_scratch_run_is_evaluated_again_from_its_run_dir(tmp_path: Path) -> None:
    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    encoder = TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=16,
            group_max_points=8,
            group_upscale_points=16,
            context_length=32,
            pointnet_dims=(16, 16, 16),
            pos_hidden=16,
        ),
        vit=ViTConfig(embed_dim=16, depth=1, num_heads=2, drop_path=0.0, attn_drop=0.0),
    )
    base = PRESETS["cluster-particle-scratch"]
    cfg = dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, warmup_steps=1),
        train=dataclasses.replace(base.train, max_steps=2, checkpoint_every=2, bf16=False),
        logging=dataclasses.replace(base.logging, progress=False),
        finetune=FinetuneConfig(data=(data,), n_train=4, n_test=2, split_fractions=(0.6, 0.2, 0.2)),
    )
    result = run_finetune(cfg, tmp_path / "run", encoder_config=encoder)
    again = evaluate_run(
        tmp_path / "run", (data,), "test", n_events=2, split_fractions=(0.6, 0.2, 0.2)
    )
    # same events, same weights: identical scores (NaN where a score is undefined)
    assert again["instance"] == pytest.approx(result.metrics["instance"], nan_ok=True)
    saved = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert saved["data"]["n_events"] == 2
