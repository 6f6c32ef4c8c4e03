"""The training and inference paths on CUDA (opt-in: -m gpu): the shipped encoder embeds on the
GPU as on the CPU, and a pretraining run on the GPU (bf16, caches computed ahead, a loader
worker) writes a checkpoint that exports and loads on the CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nufm
from helpers.embeddings import assert_same_embeddings
from nufm.presets import get_preset
from nufm.sim import generate_events
from nufm.train.run import run_pretrain
from nufm.workflows.embed import embed_events
from nufm.workflows.load import export_run, load_encoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_shipped_encoder_embeds_on_cuda_as_on_cpu() -> None:
    """Tokens, token features and event embeddings equal; per-point features equal but where
    a point's 3rd and 4th nearest token centres tie (the CUDA kNN breaks ties its own way)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    pre = load_encoder("lartpc-mae-m-desc")
    events = list(generate_events(6, 11))
    cpu = embed_events(pre, events, per_point=True, per_token=True, device="cpu")
    gpu = embed_events(pre, events, per_point=True, per_token=True, device="cuda")
    assert_same_embeddings(pre, events, cpu, gpu, tol=1e-3)


def test_pretraining_on_cuda_exports_a_model_that_loads_on_cpu(tmp_path: Path) -> None:
    base = get_preset("mae-m-desc-cpu")
    cfg = dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train,
            max_steps=4,
            checkpoint_every=2,
            monitor_every=0,
            device="cuda",
            init_from=None,
        ),
        optim=dataclasses.replace(base.optim, warmup_steps=1),
        logging=dataclasses.replace(base.logging, progress=False, tensorboard=False, log_every=1),
        data=dataclasses.replace(
            base.data, num_events=24, max_events=8, num_workers=1, warm_workers=2
        ),
    )
    result = run_pretrain(cfg, tmp_path / "run")
    assert result.step == 4 and np.isfinite(result.metrics["loss"])
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len([r for r in rows if "loss" in r]) >= 4
    export_run(tmp_path / "run", tmp_path / "model", dtype=torch.float16)
    model = nufm.load(tmp_path / "model")
    emb = nufm.embed(model, list(generate_events(2, 5)), device="cpu")
    assert emb.event.shape[0] == 2 and np.isfinite(emb.event).all()
