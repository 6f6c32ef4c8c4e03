"""Tiny configs shared by the tests: encoders for the task tests and a CPU training run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nufm.config import (
    DataConfig,
    FinetuneConfig,
    LoggingConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from nufm.data.event import Event
from nufm.models.encoders import TokenViTConfig
from nufm.models.perceiver import PerceiverConfig
from nufm.models.ptv3 import PTv3Config
from nufm.models.stream_fusion import StreamFusionConfig
from nufm.models.stream_tokenizers import PatchTokenizerConfig, SetTokenizerConfig
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import ViTConfig
from nufm.ssl.toy import ToyObjectiveConfig, toy_events


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


def tiny_task_vit() -> TokenViTConfig:
    """Tokenizer (32 tokens at most) + 1-block ViT, D = 16: the encoder of tiny fine-tuning runs
    (:func:`tiny_vit` with those two changes)."""
    base = tiny_vit()
    return dataclasses.replace(
        base,
        tokenizer=dataclasses.replace(base.tokenizer, context_length=32),
        vit=dataclasses.replace(base.vit, depth=1),
    )


def tiny_finetune_run(preset: str, data: Path, steps: int) -> RunConfig:
    """Fine-tuning preset ``preset`` cut to ``steps`` fp32 CPU steps on ``data``: 4 training and
    2 test events, split 0.6 / 0.2 / 0.2, a checkpoint at the end."""
    from nufm.presets import PRESETS

    base = PRESETS[preset]
    return dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, warmup_steps=1),
        train=dataclasses.replace(base.train, max_steps=steps, checkpoint_every=steps, bf16=False),
        logging=dataclasses.replace(base.logging, progress=False),
        finetune=FinetuneConfig(data=(data,), n_train=4, n_test=2, split_fractions=(0.6, 0.2, 0.2)),
    )


def tiny_run_config(**sections: dict) -> RunConfig:
    """A tiny CPU run of the toy objective; ``sections`` override fields per section, e.g.
    ``train={"max_steps": 4}`` (``root={...}`` sets RunConfig's own fields)."""
    base = RunConfig(
        name="test",
        objective=ToyObjectiveConfig(hidden=8),
        optim=OptimConfig(lr=1e-2, min_lr=1e-3, warmup_steps=2, grad_clip=1.0),
        train=TrainConfig(max_steps=8, checkpoint_every=3, keep_checkpoints=10, device="cpu"),
        logging=LoggingConfig(log_every=1, progress=False, tensorboard=False),
        data=DataConfig(source="toy", num_events=24, max_points=120, max_events=4),
    )
    updates = {
        name: dataclasses.replace(getattr(base, name), **fields)
        for name, fields in sections.items()
        if name != "root"
    }
    return dataclasses.replace(base, **updates, **sections.get("root", {}))


def toy_factory(data_cfg: DataConfig) -> list[Event]:
    """The toy events of ``data_cfg`` (a dataset factory for the training loop)."""
    return toy_events(data_cfg.num_events, data_cfg.sim_seed)


def tiny_mae_run(data: Path) -> RunConfig:
    """``mae-tiny`` cut to 2 fp32 steps on the events of ``data`` (one checkpoint, no monitor,
    no progress bar or TensorBoard): a real pretraining run directory in seconds."""
    from nufm.presets import get_preset

    base = get_preset("mae-tiny")
    return dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train, max_steps=2, checkpoint_every=2, monitor_every=0, bf16=False
        ),
        optim=dataclasses.replace(base.optim, warmup_steps=1),
        logging=dataclasses.replace(base.logging, progress=False, tensorboard=False),
        data=DataConfig(source="file", path=data, max_points=60_000, max_events=8),
    )


def one_step_mae_run() -> RunConfig:
    """One step of the ``mae-tiny`` objective on 4 simulated events (default optimiser): the
    pretrained source of the study tests."""
    from nufm.presets import PRESETS

    return RunConfig(
        objective=PRESETS["mae-tiny"].objective,
        train=TrainConfig(max_steps=1, checkpoint_every=1, device="cpu"),
        logging=LoggingConfig(progress=False, tensorboard=False),
        data=DataConfig(source="sim", num_events=4, max_points=20000, max_events=4),
        optim=OptimConfig(warmup_steps=1),
    )


def small_fusion_encoder(width: int = 32, depth: int = 1, latents: int = 8) -> StreamFusionConfig:
    """A narrow FASERCal-shaped stream-fusion encoder for tests: the scintillator as 12 x 12 x
    10-cube patches in 10 modules (cm / 100 units), the other three streams one set token each."""
    scint = PatchTokenizerConfig(
        in_channels=4,
        embed_dim=width,
        origin=(-0.24, -0.24, -1.0),
        voxel_size=(0.01, 0.01, 0.01),
        patch_size=(0.12, 0.12, 0.10),
        grid_shape=(4, 4, 20),
        module_depth_patches=2,
    )
    calo = SetTokenizerConfig(in_channels=4, embed_dim=width, mlp_dims=(16, 16, 16))
    return StreamFusionConfig(
        streams=(scint, calo, calo, calo),
        vit=ViTConfig(embed_dim=width, depth=depth, num_heads=2, drop_path=0.0, attn_drop=0.0),
        perceiver=PerceiverConfig(
            stream_dims=(width,) * 5, num_latents=latents, latent_dim=width, num_heads=2, depth=1
        ),
    )
