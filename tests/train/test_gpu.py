"""The training and inference paths on CUDA (opt-in: -m gpu): the shipped encoder embeds on the
GPU as on the CPU, the descriptor targets computed on the GPU equal the CPU's, and a
pretraining run on the GPU (bf16, token groups computed ahead, descriptors in the step, a
loader worker) writes a checkpoint that exports and loads on the CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nufm
from helpers.ties import assert_same_embeddings, descriptor_ties
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


def test_descriptors_on_cuda_equal_the_cpu_s_away_from_ties() -> None:
    """The descriptor targets mae-s-desc-gpu computes in the step on the GPU (brute-force
    kNN, float64 moments) equal the CPU pipeline's, but at points where the k-th and
    (k+1)-th neighbours of a scale are equally far (either may be kept)."""
    from nufm.data.collate import collate
    from nufm.data.transforms import Preprocess
    from nufm.models.geometric import point_shape_descriptors

    ks = (8, 32, 128, 512)
    rng = np.random.default_rng(0)
    batch = collate([Preprocess().transforms()(e, rng) for e in generate_events(4, 7)])
    cpu = point_shape_descriptors(batch, ks).numpy()
    gpu = point_shape_descriptors(batch.to("cuda"), ks).cpu().numpy()
    tie = descriptor_ties(batch, ks)
    assert tie.mean() < 0.5
    np.testing.assert_allclose(gpu[~tie], cpu[~tie], rtol=1e-4, atol=1e-4)


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
            base.data,
            num_events=24,
            max_events=8,
            num_workers=1,
            warm_workers=2,
            cache_descriptors=False,  # as mae-s-desc-gpu: the descriptors in the step, on the GPU
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
