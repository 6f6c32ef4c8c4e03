"""Named runs: every preset of ``nufm pretrain``, ``nufm finetune`` and ``nufm study``.

:data:`PRESETS` maps a name to a full :class:`~nufm.config.RunConfig`, pretraining and
fine-tuning alike (``nufm presets`` lists them with :data:`DESCRIPTIONS`; ``nufm presets NAME``
prints one as the YAML a run saves). :data:`STUDY_PRESETS` are label-efficiency studies built
on fine-tuning runs. Model sizes stay beside their models (:data:`nufm.models.presets.PTV3_PRESETS`,
:data:`nufm.models.vit.VIT_PRESETS`). A variant is a preset, never a copied class.

* Pretraining: ``toy``/``toy-sim`` (the test objective), ``*-tiny`` (CPU in seconds per step),
  ``*-cpu`` (token ViTs for 2 CPU cores: ``mae-fast-cpu`` is the demo's live pretraining,
  ``mae-m-cpu`` made the shipped encoder ``lartpc-mae-m``, ``mae-ctx-cpu`` the earlier demo's)
  and GPU
  presets: ``mae-vit-s-4d`` (PoLAr-MAE ViT-S with the 4-D Chamfer, arXiv:2502.02558; plain
  PoLAr-MAE ViT-S is ``MAEConfig()``), ``distill-small`` (PTv3 small), ``sonata-panda-base``
  (Panda-Base, arXiv:2512.01324), ``forecast-small`` (about FM4NPP's 5M model,
  arXiv:2508.14087) and ``forecast-base``.
* Fine-tuning: ``<task>-<mode>`` for every task and mode (linear, head, full, scratch). A
  task's encoder is replaced by the pretrained model's before its weights load. Recipes follow
  PoLAr-MAE (arXiv:2502.02558) and Panda (arXiv:2512.01324).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nufm.config import (
    DataConfig,
    FinetuneConfig,
    LoggingConfig,
    ObjectiveConfig,
    OptimConfig,
    ProbeStudyConfig,
    RunConfig,
    StudyConfig,
    StudyMode,
    TrainConfig,
)
from nufm.data.water_cherenkov import EVENT_LABEL_NAMES
from nufm.models.encoders import DetectorTokenizer, TokenViTConfig
from nufm.models.presets import PTV3_PRESETS
from nufm.models.serialized_patches import TPC_RADIUS_RANGE, SerializedPatchConfig
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import VIT_PRESETS, ViTConfig
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.fusion_mae import FusionMAEConfig, default_fusion_encoder
from nufm.ssl.mae import MAEConfig
from nufm.ssl.toy import ToyObjectiveConfig
from nufm.ssl.views import ViewConfig
from nufm.tasks.backbone import Mode
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event_task import EventTaskConfig
from nufm.tasks.multitask import MultiTaskConfig
from nufm.tasks.pid import PIDConfig
from nufm.tasks.semseg import SemsegConfig

TaskObjective = SemsegConfig | PIDConfig | ClusterConfig | EventTaskConfig | MultiTaskConfig

# ---------------------------------------------------------------- pretraining objectives


def _tiny_vit(depth: int) -> ViTConfig:
    return ViTConfig(embed_dim=64, depth=depth, num_heads=4, drop_path=0.0, attn_drop=0.0)


_MAE_TINY = MAEConfig(
    encoder=TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=64,
            group_max_points=16,
            group_upscale_points=32,
            context_length=128,
            pointnet_dims=(32, 64, 128),
            pos_hidden=32,
        ),
        vit=_tiny_vit(2),
    ),
    decoder=dataclasses.replace(_tiny_vit(1), add_pos_at_every_layer=True),
    energy_hidden=32,
)

_TINY_PTV3 = dataclasses.replace(
    PTV3_PRESETS["tiny"],
    enc_mode=True,
    mask_token=True,
    enc_channels=(16, 32, 64, 64),
    enc_num_head=(2, 2, 4, 4),
    enc_patch_size=(64,) * 4,
    drop_path=0.0,
)

_DISTILL_TINY = DistillConfig(
    encoder=_TINY_PTV3,
    views=ViewConfig(num_global=2, num_local=2),
    head_hidden=128,
    head_bottleneck=32,
    num_prototypes=32,
    teacher_temp=(0.04, 0.04),
    mask_size=(0.01, 0.03),
    mask_ratio=(0.3, 0.5),
)

_CPU_WIDTH = 96

_MAE_CPU = MAEConfig(
    encoder=TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=_CPU_WIDTH,
            group_max_points=16,
            group_upscale_points=32,
            context_length=512,
            pointnet_dims=(32, 64, 128),
            pos_hidden=32,
        ),
        vit=ViTConfig(embed_dim=_CPU_WIDTH, depth=4, num_heads=4, drop_path=0.1, attn_drop=0.0),
    ),
    decoder=ViTConfig(
        embed_dim=_CPU_WIDTH,
        depth=1,
        num_heads=4,
        drop_path=0.0,
        attn_drop=0.0,
        add_pos_at_every_layer=True,
    ),
    energy_hidden=32,
)
"""The demo's encoder: 5-voxel tokens of 16 points, up to 512 per event, width 96, depth 4."""

_MAE_CTX_CPU = dataclasses.replace(_MAE_CPU, context_weight=1.0)
"""``mae-cpu`` plus the context-reconstruction term (docs/objectives.md)."""

_DISTILL_VIT_CPU = DistillConfig(
    encoder=dataclasses.replace(_MAE_CPU.encoder, mask_token=True),
    views=ViewConfig(num_global=2, num_local=2),
    head_hidden=256,
    head_bottleneck=64,
    num_prototypes=64,
    mask_size=(0.01, 0.03),
    mask_ratio=(0.3, 0.6),
)
"""Sonata/Panda self-distillation of the ``mae-cpu`` token ViT (plus a mask token)."""


_MAE_FAST_CPU = dataclasses.replace(
    _MAE_CTX_CPU,
    encoder=dataclasses.replace(
        _MAE_CTX_CPU.encoder,
        tokenizer=dataclasses.replace(_MAE_CTX_CPU.encoder.tokenizer, pointnet_fp32=False),
        vit=dataclasses.replace(_MAE_CTX_CPU.encoder.vit, num_heads=3),
    ),
    decoder=dataclasses.replace(_MAE_CTX_CPU.decoder, num_heads=3),
    mask_ratio=0.75,
)
"""``mae-ctx-cpu`` with 32-wide attention heads (3 instead of 4 of width 24; same parameters),
its mini-PointNet under bf16 autocast, and 3 of 4 tokens hidden (PoLAr-MAE: 0.6; the same
probe per step, a faster step: docs/benchmarks.md)."""

_M_WIDTH = 192

_MAE_M_CPU = MAEConfig(
    encoder=TokenViTConfig(
        tokenizer=dataclasses.replace(
            _MAE_CPU.encoder.tokenizer, embed_dim=_M_WIDTH, pointnet_dims=(64, 128, 256)
        ),
        vit=dataclasses.replace(_MAE_CPU.encoder.vit, embed_dim=_M_WIDTH, depth=6, num_heads=6),
    ),
    decoder=dataclasses.replace(_MAE_CPU.decoder, embed_dim=_M_WIDTH, depth=2, num_heads=6),
    energy_hidden=64,
    context_weight=1.0,
)
"""The shipped LArTPC encoder's objective: 5-voxel tokens, ViT width 192, depth 6 (2.8 M
parameters), MAE with the context term."""

_MAE_M_DESC_CPU = dataclasses.replace(
    _MAE_M_CPU, descriptor_weight=1.0, descriptor_tokens="visible"
)
"""``mae-m-cpu`` plus the descriptor term on the visible tokens (docs/objectives.md)."""

_S_WIDTH = 384

_MAE_S_DESC = dataclasses.replace(
    _MAE_M_DESC_CPU,
    encoder=TokenViTConfig(
        tokenizer=dataclasses.replace(
            _MAE_M_CPU.encoder.tokenizer, embed_dim=_S_WIDTH, pointnet_dims=(128, 256, 512)
        ),
        vit=ViTConfig(embed_dim=_S_WIDTH, depth=12, num_heads=6, drop_path=0.1, attn_drop=0.0),
    ),
    decoder=dataclasses.replace(_MAE_M_CPU.decoder, embed_dim=_S_WIDTH, depth=4, num_heads=6),
    energy_hidden=128,
)
"""``mae-m-desc-cpu``'s objective at ViT-S scale (PoLAr-MAE's encoder: width 384, depth 12, 6
heads; decoder depth 4; arXiv:2502.02558): a 21.8 M-parameter encoder, for a GPU."""

_MAE_5M_CPU = dataclasses.replace(
    _MAE_M_CPU,
    encoder=TokenViTConfig(
        tokenizer=dataclasses.replace(_MAE_M_CPU.encoder.tokenizer, embed_dim=256),
        vit=ViTConfig(embed_dim=256, depth=7, num_heads=4, drop_path=0.1, attn_drop=0.0),
    ),
    decoder=dataclasses.replace(_MAE_M_CPU.decoder, embed_dim=256, num_heads=4),
)
"""Width 256, depth 7: a 5.7 M-parameter encoder (the scaling study's L, docs/benchmarks.md)."""

_WIDE = 512

_MAE_WIDE_CPU = dataclasses.replace(
    _MAE_M_CPU,
    encoder=TokenViTConfig(
        tokenizer=dataclasses.replace(
            _MAE_M_CPU.encoder.tokenizer, embed_dim=_WIDE, pointnet_fp32=False
        ),
        vit=ViTConfig(embed_dim=_WIDE, depth=3, num_heads=8, drop_path=0.1, attn_drop=0.0),
    ),
    decoder=dataclasses.replace(_MAE_M_CPU.decoder, embed_dim=_WIDE, num_heads=8),
)
"""Width 512 (8 heads of 64), depth 3: a 9.7 M-parameter encoder, wide and shallow so that its
products fill the CPU's matrix units (the benchmark's matrix-unit check; widths 384 and 448
measured: docs/benchmarks.md), mini-PointNet in bf16."""


_DISTILL_PTV3 = dataclasses.replace(
    _DISTILL_TINY,
    encoder=dataclasses.replace(
        PTV3_PRESETS["tiny"], enc_mode=True, mask_token=True, layer_scale=1e-5
    ),
    head_hidden=512,
    head_bottleneck=128,
    num_prototypes=256,
    teacher_temp=(0.04, 0.07),
)
"""The objective that made the shipped ``lartpc-ptv3-distill``: ``distill-tiny``'s with PTv3
tiny (4.19 M parameters) in encoder mode, head 512 / 128, 256 prototypes (its card)."""

_DISTILL_PTV3_DESC = dataclasses.replace(_DISTILL_PTV3, descriptor_weight=1.0)
"""``lartpc-ptv3-distill``'s objective plus the per-point descriptor term (docs/objectives.md)."""


def _m_train(steps: int, monitor_every: int, init_from: Path | None = None) -> TrainConfig:
    """The loop of the shipped encoders' runs: bf16, a checkpoint every 250 steps, 2 kept."""
    return TrainConfig(
        max_steps=steps,
        checkpoint_every=250,
        keep_checkpoints=2,
        bf16=True,
        monitor_every=monitor_every,
        init_from=init_from,
    )


def _cpu_pretrain(
    name: str,
    objective: ObjectiveConfig,
    steps: int,
    lr: float,
    num_events: int = 2000,
    max_events: int = 8,
) -> RunConfig:
    """A pretraining run sized for a 2-core CPU on simulated events (bf16 autocast)."""
    return RunConfig(
        name=name,
        objective=objective,
        optim=OptimConfig(lr=lr, min_lr=lr / 100, warmup_steps=max(steps // 10, 1)),
        train=TrainConfig(
            max_steps=steps,
            checkpoint_every=max(steps // 4, 1),
            bf16=True,
            monitor_every=max(steps // 5, 1),
        ),
        logging=LoggingConfig(log_every=max(steps // 50, 1)),
        data=DataConfig(
            source="sim",
            num_events=num_events,
            max_points=60_000,
            max_events=max_events,
            augment=True,
        ),
    )


def _continue_cpu(
    name: str,
    objective: ObjectiveConfig,
    shipped: str,
    steps: int,
    monitor_every: int,
    *,
    sim_seed: int,
    max_events: int,
) -> RunConfig:
    """A shipped model pretrained further on 2 CPU cores (``--train.init-from shipped``): 2,000
    simulated events of ``sim_seed``, their per-event pipeline steps cached, learning rate
    2.5e-4 (50 warm-up steps, cosine to 2.5e-6), the shipped encoders' loop."""
    return dataclasses.replace(
        _cpu_pretrain(name, objective, steps=steps, lr=2.5e-4),
        optim=OptimConfig(lr=2.5e-4, min_lr=2.5e-6, warmup_steps=50),
        train=_m_train(steps, monitor_every=monitor_every, init_from=Path(shipped)),
        data=DataConfig(
            source="sim", num_events=2000, sim_seed=sim_seed, max_events=max_events, augment=True
        ),
    )


def _token_encoder(group_radius: float, width: int) -> TokenViTConfig:
    """``mae-cpu``'s token ViT with tokens of ``group_radius`` (normalised units) on events of
    ``width`` feature channels."""
    return dataclasses.replace(
        _MAE_CPU.encoder,
        tokenizer=dataclasses.replace(
            _MAE_CPU.encoder.tokenizer, group_radius=group_radius, in_channels=width
        ),
    )


_WC_ENCODER = _token_encoder(group_radius=0.08, width=5)
"""Water Cherenkov token ViT: 1.6 m PMT groups, [x, y, z, log charge, time] (measured better
than PTv3 tiny, whose 0.001 grid leaves PMTs 36 cells apart: docs/detectors.md)."""
_TPC_ENCODER = _token_encoder(group_radius=0.03, width=4)
"""Collider-TPC token ViT: 3.9 cm hit groups (measured better than PTv3 tiny for track
finding: docs/detectors.md)."""


def _other_detector(name: str, detector: str, encoder: TokenViTConfig) -> RunConfig:
    """``mae-cpu`` for another detector's event files with its token ``encoder``; refused
    without ``--data.source file --data.path``."""
    mae = dataclasses.replace(_MAE_CPU, encoder=encoder, energy_channel=3)
    run = _cpu_pretrain(name, mae, steps=1000, lr=1e-3)
    return dataclasses.replace(
        run,
        train=dataclasses.replace(run.train, monitor_every=0),  # the probe monitor is LArTPC's
        data=dataclasses.replace(run.data, detector=detector),
    )


_MIX_ENCODER = dataclasses.replace(
    _MAE_CPU.encoder,
    detector="lartpc",
    other_tokenizers=(
        DetectorTokenizer(detector="water-cherenkov", tokenizer=_WC_ENCODER.tokenizer),
        DetectorTokenizer(detector="collider-tpc", tokenizer=_TPC_ENCODER.tokenizer),
    ),
)
"""Cross-experiment token ViT: the tokenizers of ``mae-cpu`` (LArTPC), ``mae-wc-cpu`` and
``mae-tpc-cpu``, each embedding its own detector's batches, and one shared ViT."""


def _mixture() -> RunConfig:
    """MAE over several detectors' event files (``--data.source mixture --data.mixture
    F[:W] ...``): ``_MIX_ENCODER``, the ``mae-cpu`` schedule; without a mixture, LArTPC events."""
    mae = dataclasses.replace(_MAE_CPU, encoder=_MIX_ENCODER, energy_channel=3)
    run = _cpu_pretrain("mae-mix-cpu", mae, steps=1000, lr=1e-3)
    return dataclasses.replace(run, train=dataclasses.replace(run.train, monitor_every=0))


_TPC_FORECAST = ForecastConfig(
    encoder=SerializedPatchConfig(
        in_channels=4,
        patch_points=16,
        max_patches=512,
        order="radial-cells",
        radius_range=TPC_RADIUS_RANGE,
        target_scale=0.1,
        embed_dim=_CPU_WIDTH,
        depth=4,
        num_heads=4,
        pointnet_dims=(32, 64, 128),
    )
)
"""Collider-TPC forecasting (FM4NPP, arXiv:2508.14087): hits ordered by radius, then by
8 x 8 x 6 (eta, phi, R) cells over the TPC's 30-78 cm; 16-hit patches of [x, y, z, log
charge] with patch-relative positions in 13 cm units (a patch's hits lie a median 10 cm from
its centre on simulated events); width 96, depth 4."""


def _tpc_forecast() -> RunConfig:
    """``_TPC_FORECAST`` on collider-TPC event files (refused without ``--data.source file
    --data.path``), 600 CPU steps."""
    run = _cpu_pretrain("forecast-tpc-cpu", _TPC_FORECAST, steps=600, lr=1e-3)
    return dataclasses.replace(
        run,
        train=dataclasses.replace(run.train, monitor_every=0),  # the probe monitor is LArTPC's
        data=dataclasses.replace(run.data, detector="collider-tpc"),
    )


_FASERCAL_ENCODER = default_fusion_encoder(64)
"""FASERCal stream-fusion encoder: 12 x 12 x 10-cube scintillator patches attended within each
of the 10 modules, one token each for the ECAL, HCAL and muon spectrometer, 32 Perceiver
latents of width 64."""

_LARTPC_FUSION_ENCODER = dataclasses.replace(
    _FASERCAL_ENCODER,
    streams=(dataclasses.replace(_MAE_CPU.encoder.tokenizer, embed_dim=64),),
    perceiver=dataclasses.replace(_FASERCAL_ENCODER.perceiver, stream_dims=(64,)),
    point_stream=0,
)
"""The FASERCal encoder's ViT and Perceiver on LArTPC points: one stream of ``mae-cpu``'s
2-voxel point groups, whose tokens (with the event's mean latent) reach the points; the
detector whose core a FASERCal pretraining carries over to (``--finetune.transfer core``)."""


def _fasercal_pretrain(name: str, objective: FusionMAEConfig, steps: int) -> RunConfig:
    """A FASERCal pretraining phase on an event file (refused without ``--data.source file
    --data.path``): 8 events per step; the detector's symmetry (none: a beam along z) leaves
    the augmentation without rotations."""
    run = _cpu_pretrain(name, objective, steps=steps, lr=1e-3, max_events=8)
    return dataclasses.replace(
        run,
        train=dataclasses.replace(run.train, monitor_every=0),  # the probe monitor is LArTPC's
        data=dataclasses.replace(run.data, detector="fasercal"),
    )


def _in_step_groups(run: RunConfig) -> RunConfig:
    """``run`` grouping tokens inside every step (the reference of the throughput benchmark)."""
    return dataclasses.replace(run, data=dataclasses.replace(run.data, cache_groups=False))


def _gpu_pretrain(name: str, objective: ObjectiveConfig) -> RunConfig:
    """A GPU objective with the default (PoLAr-MAE) optimisation, loop and data sections."""
    return RunConfig(name=name, objective=objective)


_PRETRAIN: dict[str, tuple[RunConfig, str]] = {
    "toy": (
        RunConfig(
            name="toy",
            objective=ToyObjectiveConfig(hidden=16),
            optim=OptimConfig(lr=1e-3, warmup_steps=2, min_lr=1e-4),
            train=TrainConfig(max_steps=20, checkpoint_every=10, device="cpu"),
            logging=LoggingConfig(log_every=1, progress=False, tensorboard=True),
            data=DataConfig(source="toy", num_events=64, max_points=256, max_events=8),
        ),
        "test objective on tiny random events, 20 CPU steps",
    ),
    "toy-sim": (
        RunConfig(
            name="toy-sim",
            objective=ToyObjectiveConfig(in_channels=4, hidden=32),
            optim=OptimConfig(lr=1e-3, warmup_steps=10),
            train=TrainConfig(max_steps=200, checkpoint_every=50),
            logging=LoggingConfig(log_every=10),
            data=DataConfig(source="sim", num_events=256, max_points=50_000, augment=True),
        ),
        "test objective on simulated events (DDP checks)",
    ),
    "mae-tiny": (
        _cpu_pretrain("mae-tiny", _MAE_TINY, steps=300, lr=1e-3, num_events=512),
        "MAE, token ViT width 64 depth 2, 300 CPU steps",
    ),
    "distill-tiny": (
        _cpu_pretrain(
            "distill-tiny", _DISTILL_TINY, steps=100, lr=5e-4, num_events=256, max_events=4
        ),
        "self-distillation, narrow PTv3, 100 CPU steps",
    ),
    "forecast-tiny": (
        _cpu_pretrain(
            "forecast-tiny",
            ForecastConfig(
                encoder=SerializedPatchConfig(
                    patch_points=16,
                    embed_dim=64,
                    depth=2,
                    num_heads=4,
                    pointnet_dims=(32, 64, 128),
                )
            ),
            steps=300,
            lr=1e-3,
            num_events=512,
        ),
        "next-patch forecasting, width 64 depth 2, 300 CPU steps",
    ),
    "mae-cpu": (
        _in_step_groups(_cpu_pretrain("mae-cpu", _MAE_CPU, steps=1000, lr=1e-3)),
        "MAE, token ViT width 96 depth 4, 1000 steps on 2 CPU cores (groups in the step)",
    ),
    # other detectors (nufm.data.detectors; their files: --data.source file --data.path F)
    "mae-wc-cpu": (
        _other_detector("mae-wc-cpu", "water-cherenkov", _WC_ENCODER),
        "water Cherenkov MAE: mae-cpu with 1.6 m PMT groups and the hit time as a channel",
    ),
    "mae-tpc-cpu": (
        _other_detector("mae-tpc-cpu", "collider-tpc", _TPC_ENCODER),
        "collider-TPC MAE: mae-cpu with 3.9 cm hit groups",
    ),
    "mae-mix-cpu": (
        _mixture(),
        "cross-experiment MAE: one tokenizer per detector (those of mae-cpu, mae-wc-cpu, "
        "mae-tpc-cpu), one shared ViT; --data.source mixture --data.mixture FILE[:WEIGHT] ...",
    ),
    "forecast-tpc-cpu": (
        _tpc_forecast(),
        "collider-TPC next-patch forecasting in FM4NPP's radial-cell order, 16-hit patches, "
        "width 96 depth 4, 600 CPU steps",
    ),
    "fusion-mae-cpu": (
        _fasercal_pretrain(
            "fusion-mae-cpu", FusionMAEConfig(encoder=_FASERCAL_ENCODER, mask_ratio=0.75), 600
        ),
        "FASERCal phase 1: masked patch autoencoding (75 % of scintillator patches hidden)",
    ),
    "fusion-rel-cpu": (
        _fasercal_pretrain(
            "fusion-rel-cpu",
            FusionMAEConfig(encoder=_FASERCAL_ENCODER, mask_ratio=0.25, relational_weight=1.0),
            300,
        ),
        "FASERCal phase 2: MAE at 25 % plus relational voxel heads (ghost, hierarchy, "
        "category); start it from phase 1 with --train.init-from RUN",
    ),
    "mae-ctx-cpu": (
        _in_step_groups(_cpu_pretrain("mae-ctx-cpu", _MAE_CTX_CPU, steps=1000, lr=1e-3)),
        "mae-cpu plus the context term (the earlier demo's encoder; groups in the step)",
    ),
    "mae-fast-cpu": (
        dataclasses.replace(
            _cpu_pretrain("mae-fast-cpu", _MAE_FAST_CPU, steps=600, lr=1e-3, max_events=16),
            data=DataConfig(
                source="sim", num_events=20_000, stream=True, max_events=16, augment=True
            ),
        ),
        "the demo's live pretraining: mae-ctx-cpu's encoder, token groups computed once per "
        "event, streamed events, 16 per step",
    ),
    "mae-m-cpu": (
        dataclasses.replace(
            _cpu_pretrain("mae-m-cpu", _MAE_M_CPU, steps=3500, lr=5e-4, max_events=16),
            train=_m_train(3500, monitor_every=500),
            data=DataConfig(
                source="sim",
                num_events=1_000_000,
                sim_seed=1,
                stream=True,
                max_events=16,
                augment=True,
                num_workers=1,
            ),
        ),
        "the shipped encoder lartpc-mae-m: width 192 depth 6, MAE + context, fresh events",
    ),
    "mae-m-desc-cpu": (
        _continue_cpu(
            "mae-m-desc-cpu", _MAE_M_DESC_CPU, "lartpc-mae-m", 1500, 250, sim_seed=77, max_events=16
        ),
        "lartpc-mae-m continued with the descriptor term on its visible tokens: 2,000 "
        "simulated events (descriptors cached per event), 1,500 steps of 16",
    ),
    "distill-ptv3-desc-cpu": (
        _continue_cpu(
            "distill-ptv3-desc-cpu",
            _DISTILL_PTV3_DESC,
            "lartpc-ptv3-distill",
            600,
            100,
            sim_seed=78,
            max_events=4,
        ),
        "lartpc-ptv3-distill continued with the per-point descriptor term: 2,000 simulated "
        "events (descriptors cached per event), 600 steps of 4",
    ),
    "mae-s-desc-gpu": (
        RunConfig(
            name="mae-s-desc-gpu",
            objective=_MAE_S_DESC,
            optim=OptimConfig(lr=3e-4, min_lr=3e-6, warmup_steps=150),
            train=TrainConfig(
                max_steps=2000,
                checkpoint_every=200,
                keep_checkpoints=2,
                bf16=True,
                monitor_every=1000,
            ),
            logging=LoggingConfig(log_every=10),
            data=DataConfig(
                source="sim",
                num_events=6000,
                sim_seed=79,
                max_points=400_000,
                max_events=48,
                augment=True,
                num_workers=10,
                warm_workers=15,
                cache_descriptors=False,
            ),
        ),
        "mae-m-desc-cpu's recipe at ViT-S scale from scratch, for one GPU and 16 CPU cores: "
        "6,000 simulated events (token groups computed ahead in 15 processes, descriptors "
        "in the step on the GPU), 2,000 steps of 48",
    ),
    "mae-5m-cpu": (
        _cpu_pretrain("mae-5m-cpu", _MAE_5M_CPU, steps=4500, lr=5e-4, max_events=16),
        "MAE + context, a 5.7 M-parameter encoder (width 256 depth 7)",
    ),
    "mae-wide-cpu": (
        _cpu_pretrain("mae-wide-cpu", _MAE_WIDE_CPU, steps=4500, lr=5e-4, max_events=16),
        "MAE + context, a 9.7 M-parameter encoder, width 512 depth 3 (the matrix-unit check)",
    ),
    "distill-vit-cpu": (
        _cpu_pretrain("distill-vit-cpu", _DISTILL_VIT_CPU, steps=1000, lr=1e-3),
        "self-distillation of the mae-cpu token ViT, 1000 CPU steps",
    ),
    "mae-vit-s-4d": (
        _gpu_pretrain(
            "mae-vit-s-4d",
            MAEConfig(
                encoder=TokenViTConfig(
                    tokenizer=PointMAETokenizerConfig(in_channels=4), vit=VIT_PRESETS["vit-small"]
                ),
                chamfer_with_energy=True,
            ),
        ),
        "GPU: PoLAr-MAE ViT-S with the 4-D (xyz, energy) Chamfer term",
    ),
    "distill-small": (
        _gpu_pretrain(
            "distill-small",
            DistillConfig(
                encoder=dataclasses.replace(PTV3_PRESETS["small"], enc_mode=True, mask_token=True),
                views=ViewConfig(num_global=2, num_local=4),
                head_hidden=2048,
                head_bottleneck=128,
                num_prototypes=1024,
            ),
        ),
        "GPU: self-distillation of PTv3 small",
    ),
    "sonata-panda-base": (
        _gpu_pretrain(
            "sonata-panda-base",
            DistillConfig(encoder=dataclasses.replace(PTV3_PRESETS["panda-base"], mask_token=True)),
        ),
        "GPU: Panda pretraining, Panda-Base encoder, 2 global + 6 local views",
    ),
    "forecast-small": (
        _gpu_pretrain("forecast-small", ForecastConfig()),
        "GPU: next-patch forecasting, about FM4NPP's 5M model",
    ),
    "forecast-base": (
        _gpu_pretrain(
            "forecast-base",
            ForecastConfig(encoder=SerializedPatchConfig(embed_dim=512, depth=16, num_heads=8)),
        ),
        "GPU: next-patch forecasting, width 512 depth 16",
    ),
}

# ---------------------------------------------------------------- fine-tuning


def finetune_run(
    name: str,
    task: TaskObjective,
    *,
    steps: int = 200,
    lr: float = 1e-3,
    warmup_steps: int = 20,
    max_events: int = 8,
    progress: bool = True,
    n_test: int | None = None,
) -> RunConfig:
    """A fine-tuning run: AdamW (wd 0.01, grad clip 1, min lr 1% of lr), bf16, 40,000-point
    batches with random rotations, one checkpoint at the end, 20 log lines per run."""
    return RunConfig(
        name=name,
        objective=task,
        optim=OptimConfig(
            lr=lr,
            min_lr=lr * 0.01,
            warmup_steps=warmup_steps,
            weight_decay=0.01,
            weight_decay_end=0.01,
            grad_clip=1.0,
        ),
        train=TrainConfig(max_steps=steps, bf16=True, checkpoint_every=steps, keep_checkpoints=1),
        logging=LoggingConfig(log_every=max(steps // 20, 1), progress=progress, tensorboard=True),
        data=DataConfig(max_points=40_000, max_events=max_events, augment=True),
        finetune=FinetuneConfig(n_test=n_test),
    )


_PTV3_TINY = PTV3_PRESETS["tiny"]


def _token_vit() -> TokenViTConfig:
    """PoLAr-MAE ViT-S with the 5-voxel tokenizer on feat = [xyz, log energy] (as ssl.mae)."""
    return TokenViTConfig(tokenizer=PointMAETokenizerConfig(in_channels=4), vit=ViTConfig())


_TASKS: dict[str, tuple[TaskObjective, str]] = {
    "semseg": (
        SemsegConfig(encoder=_PTV3_TINY),
        "5-class semseg, focal loss with PILArNet alpha",
    ),
    # short CPU runs: the full PoLAr-MAE alpha (up to 60x track weight for Michel) drags
    # accuracy down within 100s of steps (docs/tasks.md)
    "semseg-ce": (
        SemsegConfig(encoder=_PTV3_TINY, loss="ce", class_weighting="pilarnet-sqrt"),
        "5-class semseg, CE with sqrt inverse-frequency weights",
    ),
    "semseg-polarmae": (
        SemsegConfig(
            encoder=_token_vit(),
            num_classes=4,
            neck_hidden=(384, 384),
            head_hidden=(512, 256),
            dropout=0.5,
        ),
        "PoLAr-MAE 4-class semseg (LED removed), ViT-S head sizes",
    ),
    "pid": (PIDConfig(encoder=_PTV3_TINY), "particle identification per true instance"),
    "pid-fusion": (
        PIDConfig(encoder=_LARTPC_FUSION_ENCODER),
        "particle identification per true instance with the FASERCal fusion encoder "
        "(the cross-detector transfer: --finetune.transfer core)",
    ),
    "cluster-particle": (
        ClusterConfig(encoder=_PTV3_TINY, target="particle"),
        "particle clustering (discriminative loss)",
    ),
    "cluster-interaction": (
        ClusterConfig(encoder=_PTV3_TINY, target="interaction"),
        "interaction clustering (discriminative loss)",
    ),
    "event-ninteractions": (
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="classification",
            targets=("n_interactions",),
            num_classes=4,
            class_offset=1,
        ),
        "event classification: number of interactions",
    ),
    # log visible energy (MeV, AddEventTargets); shift/scale put typical events near 0 +- 1
    "event-energy": (
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="regression",
            targets=("visible_energy",),
            transform="log",
            target_shift=6.5,
            target_scale=1.0,
        ),
        "event regression: log visible energy",
    ),
    # first-interaction vertex in normalised coordinates (AddEventTargets)
    "event-vertex": (
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="regression",
            targets=("vertex_x", "vertex_y", "vertex_z"),
            target_scale=0.3,
        ),
        "event regression: first-interaction vertex",
    ),
    # collider TPC hits (nufm simulate --detector collider-tpc): the per-hit tasks of FM4NPP
    "tpc-pid": (
        SemsegConfig(encoder=_TPC_ENCODER, loss="ce", class_weighting="none"),
        "collider TPC per-hit particle ID (other, pion, kaon, proton, electron)",
    ),
    "tpc-noise": (
        SemsegConfig(
            encoder=_TPC_ENCODER, num_classes=2, labels="noise", loss="ce", class_weighting="none"
        ),
        "collider TPC noise tagging (random hits and loopers against track hits)",
    ),
    "tpc-tracks": (
        ClusterConfig(encoder=_TPC_ENCODER, target="particle"),
        "collider TPC track finding: per-hit embeddings clustered (efficiency, fake rate, ARI)",
    ),
    # water Cherenkov events (targets from nufm.data.water_cherenkov.event_truth); the field
    # quotes e efficiency at 99.9 % mu and 95 % pi0 rejection
    "wc-pid": (
        EventTaskConfig(
            encoder=_WC_ENCODER,
            kind="classification",
            targets=("wc_label",),
            num_classes=len(EVENT_LABEL_NAMES),
            class_offset=0,
            class_names=EVENT_LABEL_NAMES,
            efficiency_at=((1, 2, 0.999), (1, 3, 0.95)),
        ),
        "water Cherenkov particle ID of the primary (gamma, e, mu, pi0, pi+)",
    ),
    "wc-rings": (
        EventTaskConfig(
            encoder=_WC_ENCODER,
            kind="classification",
            targets=("n_rings",),
            num_classes=3,
            class_offset=1,
            class_names=("<=1", "2", ">=3"),
        ),
        "water Cherenkov ring counting (<=1, 2, >=3 rings)",
    ),
    # which particle made each hit's light; CE weighted by the square root of the inverse
    # category frequencies of a mixed e / mu / pi0 / pi+ gun sample (54 / 1.5 / 4.2 / 40 % of
    # the non-noise hits), dark noise (-1) ignored
    "wc-hits": (
        SemsegConfig(
            encoder=_WC_ENCODER,
            num_classes=4,
            loss="ce",
            class_weighting="custom",
            class_weights=(1.0, 6.0, 3.6, 1.2),
        ),
        "water Cherenkov per-hit category (primary, decay electron, secondary pion, pi0 gamma)",
    ),
    # log kinetic energy of the primary, MeV; shift/scale put 100-1000 MeV near 0 +- 1
    "wc-energy": (
        EventTaskConfig(
            encoder=_WC_ENCODER,
            kind="regression",
            targets=("primary_energy",),
            transform="log",
            target_shift=6.0,
            target_scale=1.0,
        ),
        "water Cherenkov regression: log kinetic energy of the primary",
    ),
    # vertex (normalised units: 20 m) and direction of the primary (AddEventTargets)
    "wc-vertex": (
        EventTaskConfig(
            encoder=_WC_ENCODER,
            kind="regression",
            targets=("vertex_x", "vertex_y", "vertex_z"),
            target_scale=0.3,
        ),
        "water Cherenkov regression: vertex",
    ),
    "wc-direction": (
        EventTaskConfig(
            encoder=_WC_ENCODER,
            kind="regression",
            targets=("dir_x", "dir_y", "dir_z"),
            target_scale=0.5,
        ),
        "water Cherenkov regression: direction of the primary (unit vector)",
    ),
    # FASERCal neutrino interactions (nufm simulate --detector fasercal): the reference's
    # joint fine-tuning of flavour, charm, momenta and vertex on the fused latents
    "fasercal": (
        MultiTaskConfig(encoder=_FASERCAL_ENCODER),
        "FASERCal joint flavour, charm, lepton / jet momentum and vertex",
    ),
}
"""Task prefix -> (task config, description); every mode of each becomes a preset."""

_MODES: tuple[Mode, ...] = ("linear", "head", "full", "scratch")
_MODE_TEXT = {
    "linear": "linear probe on the frozen encoder",
    "head": "frozen encoder, trained neck and head",
    "full": "everything trains",
    "scratch": "random encoder, everything trains",
}


def _task(prefix: str, mode: Mode) -> TaskObjective:
    return dataclasses.replace(_TASKS[prefix][0], mode=mode)


_FINETUNE: dict[str, tuple[RunConfig, str]] = {
    f"{prefix}-{mode}": (
        finetune_run(f"{prefix}-{mode}", _task(prefix, mode)),
        f"fine-tune: {text}; {_MODE_TEXT[mode]}",
    )
    for prefix, (_, text) in _TASKS.items()
    for mode in _MODES
}

PRESETS: dict[str, RunConfig] = {k: v for k, (v, _) in (_PRETRAIN | _FINETUNE).items()}
"""Preset name -> run config."""

DESCRIPTIONS: dict[str, str] = {k: d for k, (_, d) in (_PRETRAIN | _FINETUNE).items()}
"""Preset name -> one line for ``nufm presets``."""


def get_preset(name: str) -> RunConfig:
    """The preset called ``name``; ``KeyError`` lists the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------- label-efficiency studies

_QUICK_STUDY_RUN = finetune_run(
    "semseg-ce",
    _task("semseg-ce", "full"),
    steps=160,
    warmup_steps=16,
    lr=2e-3,
    max_events=8,
    progress=False,
    n_test=100,
)
"""The fine-tuning run of the demo's study (and of ``probe``: its split, test events, task)."""


def _scratch_study_run(prefix: str) -> RunConfig:
    """A study's run of task ``prefix`` in scratch mode: 200 steps of 8 events at lr 2e-3, 200
    test events (the study's ``steps`` set the budget per size)."""
    return finetune_run(
        prefix,
        _task(prefix, "scratch"),
        steps=200,
        warmup_steps=20,
        lr=2e-3,
        max_events=8,
        progress=False,
        n_test=200,
    )


_WC_CLASSICAL: tuple[tuple[str, StudyMode], ...] = (
    ("rings", "gbt-hitpattern"),
    ("vertex", "wc-fit"),
    ("direction", "wc-fit"),
    ("energy", "wc-fit"),
    ("hits", "gbt-hitfit"),
)
"""The water Cherenkov study presets' tasks and their classical rows."""

STUDY_PRESETS: dict[str, StudyConfig] = {
    # a seconds-long pipeline check (tests), not a measurement
    "smoke": StudyConfig(
        run=finetune_run(
            "semseg",
            _task("semseg", "full"),
            steps=3,
            warmup_steps=1,
            max_events=4,
            progress=False,
            n_test=4,
        ),
        sizes=(4, 8),
    ),
    # the equal-compute study of earlier demos (160 steps at every size), three seeds
    "quick": StudyConfig(run=_QUICK_STUDY_RUN, sizes=(10, 100, 1000), seeds=(0, 1, 2)),
    # the demo's study (its time on 2 CPU cores: docs/benchmarks.md): the reference-protocol
    # probes and boosted trees over three seeds (one random encoder, as there is one
    # pretrained one), the fine-tune and its scratch twin with the descriptors at the head
    # (computed once per event, read as quantile bins), budgets that grow with the labelled
    # set and early stopping on 50 val events (one seed: the 30-minute budget)
    "demo": StudyConfig(
        run=dataclasses.replace(
            _QUICK_STUDY_RUN,
            # the fused rows' descriptors enter the head as 16 quantile bins per channel; the
            # fine-tune holds its encoder frozen for the first half of its steps (LP-FT, Kumar
            # et al., arXiv:2202.10054; docs/evaluation.md): above scratch at 10 labelled
            # events where the plain fine-tune was not, a fifth faster
            objective=dataclasses.replace(
                _QUICK_STUDY_RUN.objective, descriptor_bins=16, frozen_encoder_fraction=0.5
            ),
            # 2 events a step: for the same events seen, 4x the updates of 8 a step, which
            # the head's bins need (docs/tasks.md)
            data=dataclasses.replace(_QUICK_STUDY_RUN.data, max_events=2),
            train=dataclasses.replace(_QUICK_STUDY_RUN.train, monitor_every=200),
            finetune=FinetuneConfig(n_test=100, n_val=50),
        ),
        sizes=(10, 100, 1000),
        steps=(400, 600, 600),  # 10 events converge slowly (docs/tasks.md); fits 30 minutes
        modes=(
            "probe-random",
            "probe-geometry",
            "gbt-geometry",
            "probe",
            "full-fused",
            "scratch-fused",
        ),
        seeds=(0, 1, 2),
        network_seeds=(0,),
        probe=ProbeStudyConfig(
            learning_rates=(1e-3, 1e-2, 1e-1),
            min_steps=1000,
            gbt_max_train_points=100_000,
            gbt_threads=None,  # both cores: 35 s instead of 55 s at 1,000 events, same trees
            random_encoder_seed=0,
        ),
    ),
    # the reference-protocol probes and the boosted-trees row on the quick study's split
    # (frozen features, lr bag selected on val events; docs/evaluation.md)
    "probe": StudyConfig(
        run=_QUICK_STUDY_RUN,
        sizes=(10, 100, 1000),
        modes=("probe-random", "probe-geometry", "gbt-geometry", "probe"),
        seeds=(0, 1, 2),
    ),
    # water Cherenkov particle ID (e, mu, pi0, pi+ guns; nufm simulate --gun one-of): the
    # network from scratch against boosted trees on hit-pattern features; no pretrained model
    "wc-pid": StudyConfig(
        run=_scratch_study_run("wc-pid"),
        sizes=(50, 200, 800),
        steps=(100, 200, 400),
        modes=("gbt-hitpattern", "scratch"),
        seeds=(0, 1, 2),
        network_seeds=(0,),
    ),
    # collider-TPC per-hit particle class (nufm simulate --detector collider-tpc): the token
    # ViT from scratch against the classical dE/dx identification on Hough tracks
    "tpc-pid": StudyConfig(
        run=_scratch_study_run("tpc-pid"),
        sizes=(50, 400),
        steps=(100, 300),
        modes=("dedx-hough", "scratch"),
        seeds=(0, 1, 2),
        network_seeds=(0,),
    ),
    # the other water Cherenkov tasks against their classical rows: ring counting with the
    # hit-pattern trees; vertex, direction and energy with the point fit (vertex and
    # direction use no labels; the energy line is fitted on the labelled events)
    **{
        f"wc-{task}": StudyConfig(
            run=_scratch_study_run(f"wc-{task}"),
            sizes=(50, 200, 800),
            steps=(100, 200, 400),
            modes=(classical, "scratch"),
            seeds=(0, 1, 2),
            network_seeds=(0,),
        )
        for task, classical in _WC_CLASSICAL
    },
    # collider-TPC track finding and noise tagging against the Hough transform (no labels)
    **{
        f"tpc-{task}": StudyConfig(
            run=_scratch_study_run(f"tpc-{task}"),
            sizes=(50, 400),
            steps=(100, 300),
            modes=("hough", "scratch"),
            seeds=(0,),
        )
        for task in ("tracks", "noise")
    },
    # LArTPC particle ID with the FASERCal fusion encoder: its core pretrained on FASERCal
    # (nufm fasercal-study's runs; --pretrained RUN) against the same encoder from scratch
    "pid-transfer": StudyConfig(
        run=dataclasses.replace(
            _scratch_study_run("pid-fusion"), finetune=FinetuneConfig(n_test=200, transfer="core")
        ),
        sizes=(50, 200, 800),
        steps=(100, 200, 300),
        modes=("full", "scratch"),
        seeds=(0, 1, 2),
    ),
    # for a GPU node: 5 sizes, 3 seeds, longer runs
    "full": StudyConfig(
        run=finetune_run(
            "semseg",
            _task("semseg", "full"),
            steps=5000,
            warmup_steps=250,
            lr=1e-3,
            max_events=32,
            progress=True,
            n_test=1000,
        ),
        sizes=(10, 100, 1000, 10_000, 100_000),
        seeds=(0, 1, 2),
    ),
}
"""Study name -> study config (``nufm study --preset NAME``)."""


def get_study_preset(name: str) -> StudyConfig:
    """The study preset called ``name``; ``KeyError`` lists the known ones."""
    if name not in STUDY_PRESETS:
        raise KeyError(f"unknown study preset {name!r}; known: {sorted(STUDY_PRESETS)}")
    return STUDY_PRESETS[name]
