"""Run configuration: typed, frozen dataclasses composed into one :class:`RunConfig`.

Each field's docstring is its ``--help`` text under tyro (``nufm pretrain --optim.lr 3e-4``).
Defaults live only here; ``__post_init__`` only validates. Every run writes its config as
``config.yaml`` and stores the same dict in each checkpoint (:func:`config_to_dict`);
:func:`config_from_dict` rebuilds the typed object, so a run directory fully describes the run.

What a run trains is :data:`ObjectiveConfig`, a union whose members carry a ``name`` literal as
discriminator: the self-supervised objectives of :mod:`nufm.ssl` (pretraining), the fine-tuning
tasks of :mod:`nufm.tasks` and a toy objective for tests. A fine-tuning run is a ``RunConfig``
whose objective is a task config and whose :class:`FinetuneConfig` section names the pretrained
encoder, the labelled files and their split; ``nufm finetune`` runs the same loop. Named runs
live in :mod:`nufm.presets`.
Optimisation defaults follow PoLAr-MAE (arXiv:2502.02558): AdamW, lr 1e-4, wd 0.05, clip 3.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from nufm.data.mixture import parse_mixture_entry
from nufm.errors import ConfigError, NotFoundError
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.fusion_mae import FusionMAEConfig
from nufm.ssl.mae import MAEConfig
from nufm.ssl.toy import ToyObjectiveConfig
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event_task import EventTaskConfig
from nufm.tasks.multitask import MultiTaskConfig
from nufm.tasks.pid import PIDConfig
from nufm.tasks.semseg import SemsegConfig

ObjectiveConfig = (
    MAEConfig
    | DistillConfig
    | ForecastConfig
    | FusionMAEConfig
    | SemsegConfig
    | PIDConfig
    | ClusterConfig
    | EventTaskConfig
    | MultiTaskConfig
    | ToyObjectiveConfig
)
"""What a run trains: a pretraining objective, a fine-tuning task or the toy objective. Every
member has a ``name`` literal; :func:`nufm.train.components.build_objective` dispatches on the
type."""

_TASK_CONFIGS = (SemsegConfig, PIDConfig, ClusterConfig, EventTaskConfig, MultiTaskConfig)
"""The fine-tuning tasks among :data:`ObjectiveConfig`."""


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW and the precomputed schedules (see :mod:`nufm.train.schedules`)."""

    lr: float = 1e-4
    """Peak learning rate (after warmup), for the total batch of all ranks and accumulations."""
    min_lr: float = 1e-6
    """Learning rate at the last step (end of the cosine)."""
    warmup_steps: int = 100
    """Optimizer steps of linear warmup."""
    warmup_start_lr: float = 0.0
    """Learning rate at step 0."""
    weight_decay: float = 0.05
    """Weight decay at step 0 (weight matrices only; never biases, norms, tokens)."""
    weight_decay_end: float = 0.05
    """Weight decay at the last step (cosine in between)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 3.0
    """Clip the global gradient norm to this value; 0 = no clipping (norm still logged)."""
    momentum_start: float = 0.996
    """EMA teacher momentum at step 0 (objectives with ``update_teacher`` only)."""
    momentum_end: float = 1.0
    """EMA teacher momentum at the last step."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.min_lr < 0 or self.warmup_start_lr < 0:
            raise ConfigError(
                f"optim: learning rates must be lr > 0, min_lr >= 0, "
                f"warmup_start_lr >= 0; got {self.lr}, {self.min_lr}, "
                f"{self.warmup_start_lr}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0 or self.weight_decay_end < 0:
            raise ConfigError("optim.weight_decay and optim.weight_decay_end must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.grad_clip < 0:
            raise ConfigError(f"optim.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        for name in ("momentum_start", "momentum_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"optim.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Length, precision, device, seeding and checkpointing of the loop."""

    max_steps: int = 1000
    """Number of optimizer steps."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (gradients are averaged)."""
    seed: int = 0
    """Seeds model init, event order, augmentations and the objective's randomness."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto' = CUDA when available (under DDP: cuda:LOCAL_RANK)."""
    bf16: bool = False
    """True = run forward passes under bfloat16 autocast where the machine has native bf16
    matrix products (a GPU with bf16; a CPU with AVX-512 / AMX / ARM bf16); elsewhere fp32, said
    in the log (bf16 would be about 10x slower there: :mod:`nufm.train.precision`)."""
    compile: bool = False
    """True = wrap the objective with torch.compile."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 3
    """How many most recent complete checkpoints to keep (older ones are deleted)."""
    monitor_every: int = 0
    """Call the monitor (e.g. a linear probe) every this many steps; 0 = never."""
    init_from: Path | None = None
    """Pretraining: start from the weights of an earlier run (its directory or a checkpoint):
    tensors of matching name and shape load, the encoder must match whole, the optimizer and
    step start fresh (e.g. the relational phase after the MAE phase). An exported encoder (a
    ``nufm export`` directory, or a shipped model's name such as ``lartpc-mae-m``) loads the
    encoder only. A resumed run's own checkpoint replaces them."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "grad_accum", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"train.seed must be >= 0, got {self.seed}")
        if self.monitor_every < 0:
            raise ConfigError(f"train.monitor_every must be >= 0, got {self.monitor_every}")


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """Where and how often metrics go."""

    log_every: int = 10
    """Write averaged metrics (JSONL, TensorBoard, W&B) every this many steps."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0)."""
    tensorboard: bool = True
    """Write TensorBoard event files under ``run_dir/tensorboard``."""
    wandb: bool = False
    """Log to Weights & Biases (needs ``wandb`` installed)."""
    wandb_project: str = "nufm"
    """W&B project name."""

    def __post_init__(self) -> None:
        if self.log_every <= 0:
            raise ConfigError(f"logging.log_every must be positive, got {self.log_every}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which events to train on and how to batch them."""

    source: Literal["toy", "sim", "file", "mixture"] = "sim"
    """'sim' = events from the built-in LArTPC simulator (nufm.sim); 'file' = an event file
    (``path``) of any layout nufm reads; 'mixture' = the event files of ``mixture``, of one or
    several detectors (cross-experiment pretraining); 'toy' = tiny random events for tests."""
    mixture: tuple[str, ...] = ()
    """source 'mixture': event files as ``PATH`` or ``PATH:WEIGHT`` (weight 1 when not given).
    Every batch holds one file's events; a file's share of the batches is its weight over the
    sum (``nufm.data.collate.MixtureBudgetSampler``). Each file's events get their
    detector's preprocessing, and a token ViT with one tokenizer per detector
    (``TokenViTConfig.other_tokenizers``) embeds them."""
    path: Path | None = None
    """Event file for source='file' (PILArNet-M .h5 is read lazily, the other LArTPC layouts
    through a cached PILArNet-M copy; the collider-TPC .npz and water Cherenkov .h5 are read
    into memory)."""
    detector: str | None = None
    """The detector of the events (nufm.data.detectors), which fixes their preprocessing;
    None = the file's (from its layout) or the LArTPC's. A pretraining run records it, so its
    model carries the right preprocessing wherever it is loaded."""
    num_events: int = 1000
    """Events to simulate (source 'sim'/'toy')."""
    sim_seed: int = 0
    """Seed of the simulated / toy events (event i depends only on (sim_seed, i))."""
    max_points: int = 200_000
    """Point budget of one micro-batch on one rank."""
    max_events: int | None = 32
    """Cap on events in one micro-batch (None = only the point budget)."""
    shuffle: bool = True
    """Shuffle the event order every epoch (seeded by train.seed and the epoch)."""
    augment: bool = False
    """Apply the seeded augmentations below (RNG from (seed, epoch, event index)); False = none
    of them. They run on normalised coordinates and MeV energies, in the order crop, rotate,
    flip, scale, jitter, energy smear (nufm.data.transforms)."""
    rotate: bool = True
    """With augment: a uniform random rotation about the volume centre, as the detector's
    symmetry allows (``Detector.symmetry``): any 3D rotation for a LArTPC, about the z axis for
    the water Cherenkov cylinder and the collider TPC, none for FASERCal's beam."""
    flip_p: float = 0.0
    """With augment: mirror each axis with this probability (0 = off)."""
    scale: tuple[float, float] | None = None
    """With augment: scale positions by a factor uniform in [low, high] (None = off)."""
    crop: tuple[float, float] | None = None
    """With augment: keep the nearest fraction (uniform in [min, max]) of the points around a
    random point (None = off)."""
    jitter: tuple[float, float] | None = None
    """With augment: Gaussian noise (sigma, clip) on each point's normalised coordinate
    (None = off)."""
    energy_smear: float = 0.0
    """With augment: multiply each energy by max(0, 1 + energy_smear * N(0, 1)) (0 = off)."""
    num_workers: int = 0
    """DataLoader worker processes per rank."""
    warm_workers: int = 0
    """Before the first step, compute every event's per-event values (local-shape
    descriptors, token groups) in this many forked processes and keep them all in memory, so
    the loader's workers (forked after) never compute one; 'sim' events are also simulated in
    this many processes. 0 = each value is computed when its event is first read (by each
    loader worker that reads it). Not with stream or crop (nothing is cached there)."""
    stream: bool = False
    """source 'sim': simulate each event when it is read instead of all up front (any
    num_events, nothing held in memory; a long run sees fresh events). Sizes are then unknown
    ahead, so each batch holds max_events events."""
    cache_groups: bool = True
    """Objectives over token groups (MAE): compute each event's groups once, in the data
    pipeline before the augmentations, and reuse them every epoch (without a crop); False =
    group inside every training step."""
    cache_descriptors: bool = True
    """Objectives that read local-shape descriptors (the MAE's descriptor term): compute each
    event's once, in the data pipeline before the augmentations, and reuse them every epoch
    (without a crop); False = compute them inside every training step, on the step's device
    (on a GPU by a brute-force kNN there, which may break ties between equally far
    neighbours otherwise than the CPU's kNN: slightly other targets at those points,
    docs/training.md)."""

    def __post_init__(self) -> None:
        if self.source == "file" and self.path is None:
            raise ConfigError("data.source='file' needs data.path")
        if (self.source == "mixture") != bool(self.mixture):
            raise ConfigError(
                "data.mixture (files as PATH or PATH:WEIGHT) goes with data.source='mixture'"
                f" and only with it; got source {self.source!r}, mixture {self.mixture}"
            )
        for entry in self.mixture:
            parse_mixture_entry(entry)  # a bad weight is refused here
        if self.num_events <= 0:
            raise ConfigError(f"data.num_events must be positive, got {self.num_events}")
        if self.max_points <= 0:
            raise ConfigError(f"data.max_points must be positive, got {self.max_points}")
        if self.max_events is not None and self.max_events <= 0:
            raise ConfigError(f"data.max_events must be positive or None, got {self.max_events}")
        if self.stream and self.source != "sim":
            raise ConfigError(f"data.stream needs data.source='sim', got {self.source!r}")
        if self.stream and self.max_events is None:
            raise ConfigError("data.stream needs data.max_events (sizes are unknown ahead)")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.warm_workers < 0:
            raise ConfigError(f"data.warm_workers must be >= 0, got {self.warm_workers}")
        if self.warm_workers and (self.stream or self.crop is not None):
            raise ConfigError(
                "data.warm_workers fills the per-event caches, which data.stream and data.crop "
                "turn off; use data.warm-workers 0 with them"
            )
        if not 0.0 <= self.flip_p <= 1.0:
            raise ConfigError(f"data.flip_p must be in [0, 1], got {self.flip_p}")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"data.scale must be 0 < low <= high, got {self.scale}")
        if self.crop is not None and not 0 < self.crop[0] <= self.crop[1] <= 1:
            raise ConfigError(f"data.crop must be 0 < min <= max <= 1, got {self.crop}")
        if self.jitter is not None and not (self.jitter[0] >= 0 and self.jitter[1] >= 0):
            raise ConfigError(f"data.jitter (sigma, clip) must be >= 0, got {self.jitter}")
        if self.energy_smear < 0:
            raise ConfigError(f"data.energy_smear must be >= 0, got {self.energy_smear}")


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """What a fine-tuning run adds: the pretrained encoder, the labelled events and their split.

    The labelled files are split by whole event into train / val / test (seeded); the run trains
    on the first ``n_train`` events of a seeded permutation of the train split (so subsets of
    growing size are nested) and is evaluated on the first ``n_test`` of the test split.
    """

    pretrained: Path | None = None
    """Pretraining run directory, exported model or shipped model name (``lartpc-mae-m``,
    ``nufm.hub.SHIPPED_MODELS``); its encoder config replaces the task's, its
    weights initialise the encoder (modes linear / head / full) and its preprocessing is used.
    Required except for mode 'scratch'."""
    data: tuple[Path, ...] = ()
    """PILArNet-M layout HDF5 file(s) with labels."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train / val / test fractions of the events."""
    split_seed: int = 0
    """Seed of the event split and of the labelled-subset permutation."""
    n_train: int | None = None
    """Labelled training events used (first n of the permuted train split); None = all."""
    n_test: int | None = None
    """Test events evaluated (first n of the permuted test split); None = all."""
    eval_batch_points: int = 100_000
    """Point budget of evaluation batches."""
    transfer: Literal["whole", "core"] = "whole"
    """How the pretrained encoder is used: ``whole`` (the same detector: its weights and
    preprocessing); ``core`` (another detector: only its detector-independent core loads,
    :func:`nufm.models.encoders.core_prefixes`, under the input embedding and preprocessing of
    the data's detector from the task preset, which start fresh; FASERCal's transfer)."""
    n_val: int = 0
    """Early stopping: every ``train.monitor_every`` steps (and at the end) the task is scored
    on the first ``n_val`` events of the val split, and the weights with the best val score
    (macro F1; ARI or minus RMS for the other tasks) are the ones tested and saved in
    ``best.safetensors`` (which ``nufm evaluate``, ``load_task`` and the other readers of the
    run then use). 0 = off (the last weights are tested)."""
    calibrate: bool = True
    """Semantic segmentation with ``n_val`` > 0: after the weights are selected, fit one
    decision offset per class on the val events to maximise macro F1 (so a rare class such
    as the Michel electron is predicted where its logits rank it, :mod:`nufm.eval.calibration`);
    the offsets are part of the saved task and recorded in ``metrics.json``."""

    def __post_init__(self) -> None:
        if self.n_val < 0:
            raise ConfigError(f"finetune.n_val must be >= 0, got {self.n_val}")
        for n, name in ((self.n_train, "n_train"), (self.n_test, "n_test")):
            if n is not None and n <= 0:
                raise ConfigError(f"finetune.{name} must be positive, got {n}")
        if self.eval_batch_points <= 0:
            raise ConfigError(
                f"finetune.eval_batch_points must be positive, got {self.eval_batch_points}"
            )


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that defines a run: pretraining, or fine-tuning when ``objective`` is a task."""

    name: str = "run"
    """Run name (logs, W&B)."""
    objective: ObjectiveConfig
    """What trains: a pretraining objective or a fine-tuning task, with its model."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedules."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop length, precision, checkpointing."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Metrics output."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training events and batching."""
    finetune: FinetuneConfig | None = None
    """Fine-tuning inputs (pretrained encoder, labelled files, split); None for pretraining."""

    @property
    def is_finetune(self) -> bool:
        """True when the objective is a fine-tuning task (``nufm finetune`` runs it)."""
        return isinstance(self.objective, _TASK_CONFIGS)

    def __post_init__(self) -> None:
        if self.finetune is not None and not self.is_finetune:
            raise ConfigError(
                f"finetune: a fine-tuning section needs a task objective, got "
                f"{type(self.objective).__name__}"
            )
        if self.optim.warmup_steps > self.train.max_steps:
            raise ConfigError(
                f"optim.warmup_steps={self.optim.warmup_steps} exceeds "
                f"train.max_steps={self.train.max_steps}"
            )


StudyMode = Literal[
    "linear",
    "head",
    "full",
    "scratch",
    "linear-random",
    "linear-geometry",
    "probe",
    "probe-random",
    "probe-geometry",
    "gbt-geometry",
    "probe-fused",
    "gbt-fused",
    "full-fused",
    "head-fused",
    "scratch-fused",
    "gbt-hitpattern",
    "dedx-hough",
    "wc-fit",
    "hough",
    "gbt-hitfit",
]
"""A mode of the label-efficiency study: a task mode, or a linear probe on a random encoder
(``linear-random``) or on classical local-shape descriptors (``linear-geometry``), all trained
by the fine-tuning loop; or a frozen-feature probe of the reference protocol (``probe``,
``probe-random``, ``probe-geometry``: a bag of logistic-regression heads selected on val
events; ``gbt-geometry``: gradient-boosted trees on the descriptors; ``probe-fused`` and
``gbt-fused``: the same on the pretrained encoder's features beside the descriptors), see
:class:`ProbeStudyConfig`; ``full-fused``, ``head-fused`` and ``scratch-fused`` are
``full``, ``head`` and ``scratch`` with the descriptors at ``probe.geometry_ks`` beside the
encoder's features at the head's input (``TaskBaseConfig.point_descriptors``)."""

PROBE_MODES: tuple[StudyMode, ...] = (
    "probe",
    "probe-random",
    "probe-geometry",
    "gbt-geometry",
    "probe-fused",
    "gbt-fused",
)
"""Study modes fitted on frozen per-point features (of an encoder or of the descriptors),
selected on val events, with no training loop."""
EVENT_BASELINE_MODES: tuple[StudyMode, ...] = ("gbt-hitpattern",)
"""Classical rows of event classification studies: boosted trees on the water Cherenkov
hit-pattern features (``nufm.eval.wc_pid``), no network."""
CLASSICAL_MODES: tuple[StudyMode, ...] = (
    "gbt-hitpattern",
    "dedx-hough",
    "wc-fit",
    "hough",
    "gbt-hitfit",
)
"""Study rows without a network (``nufm.workflows.study_classical``): boosted trees on water
Cherenkov hit patterns, dE/dx on Hough tracks (collider-TPC hit particle ID), the water
Cherenkov point fit (vertex, direction, energy), Hough track finding (collider-TPC tracks and
noise tagging) and boosted trees on water Cherenkov hits placed by the point fit (per-hit
categories)."""
NO_PRETRAINED_MODES: tuple[StudyMode, ...] = ("scratch", "scratch-fused", *CLASSICAL_MODES)
"""Study modes that need no pretrained model (a study of only these runs without one)."""


@dataclass(frozen=True, kw_only=True)
class ProbeStudyConfig:
    """The frozen-feature modes of a study (``probe``, ``probe-random``, ``probe-geometry``,
    ``gbt-geometry``; docs/evaluation.md).

    Per-point features of the frozen encoder (pretrained, random with the run's seed, or the
    local-shape descriptors) are computed once per event and reused by every size and seed;
    a bag of class-balanced logistic-regression heads, one per learning rate
    (:class:`nufm.eval.probes.LinearProbeConfig`), or boosted trees
    (:class:`nufm.eval.boosted_trees.GBTProbeConfig`) train on the labelled training events,
    the candidate with the best macro F1 on ``n_val`` val events is selected, and it is scored
    on the study's test events.
    """

    n_val: int | None = None
    """Val events of the selection (first n of the permuted val split); None = as many as the
    study's test events (``finetune.n_test``), all when that is None too."""
    train_points_per_event: int | None = 1024
    """Train points kept per labelled event (seeded random subset of its points, the same for
    every feature source and size; features are computed on the whole event); None = all.
    Val and test events keep all their points."""
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    """AdamW learning rate of each logistic-regression head of the bag."""
    epochs: int = 20
    """Passes over the train points per head."""
    min_steps: int = 2000
    """At least this many optimizer steps per head (more epochs for small labelled sets)."""
    batch_size: int = 8192
    """Train points per step of the heads."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay of the heads."""
    geometry_ks: tuple[int, ...] = (8, 32, 128, 512)
    """Neighbourhood sizes of the descriptors of probe-geometry, gbt-geometry and the fused
    modes (probe-fused, gbt-fused, full-fused, head-fused, scratch-fused). The two large
    scales (a few cm to about 15 cm along a track) carry the context that tells a Michel
    electron from a shower electron: boosted trees on the demo's data reach macro F1 0.734
    with 100 labelled events with these four, 0.604 with (8, 32) (docs/evaluation.md). The
    ``linear-geometry`` mode, a training run, uses :class:`nufm.models.geometric.
    LocalGeometryConfig`'s default (8, 32)."""
    gbt_max_iter: int = 200
    """Boosting iterations fitted; the val events select how many are used."""
    gbt_learning_rate: float = 0.1
    """Shrinkage of each tree."""
    gbt_max_leaf_nodes: int = 31
    """Leaves per tree."""
    gbt_max_train_points: int = 200_000
    """Train points the trees see at most (seeded uniform subsample; 0 = all)."""
    gbt_threads: int | None = 1
    """OpenMP threads of the trees (None = the process's torch threads: every core, or a
    side-by-side worker's share, ``StudyConfig.workers``; one is robust on a shared
    machine)."""
    random_encoder_seed: int | None = None
    """probe-random: None = one random encoder per seed (initialised as a ``linear-random``
    run of that seed starts); a seed = that one random encoder for every seed, so the row's
    spread is that of the heads, as for the one pretrained encoder of ``probe`` (and its
    features are computed once instead of once per seed)."""

    fused_pca_dims: int = 32
    """gbt-fused: the pretrained features enter the trees as their first this many principal
    components (fitted on the labelled train points), so a fit costs about twice one on the
    descriptors alone; 0 = all channels. probe-fused always uses all channels."""

    def __post_init__(self) -> None:
        for name in ("n_val", "train_points_per_event"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"study probe.{name} must be positive, got {v}")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ConfigError(f"study probe.learning_rates must be positive: {self.learning_rates}")
        if self.epochs < 1 or self.min_steps < 0 or self.batch_size < 1:
            raise ConfigError(
                "study probe: need epochs >= 1, min_steps >= 0, batch_size >= 1; got "
                f"{self.epochs}, {self.min_steps}, {self.batch_size}"
            )
        if not self.geometry_ks or min(self.geometry_ks) < 2:
            raise ConfigError(f"study probe.geometry_ks needs sizes >= 2: {self.geometry_ks}")
        if self.fused_pca_dims < 0:
            raise ConfigError(f"study probe.fused_pca_dims must be >= 0, got {self.fused_pca_dims}")
        if self.gbt_max_iter < 1 or self.gbt_max_train_points < 0:
            raise ConfigError(
                f"study probe: need gbt_max_iter >= 1 and gbt_max_train_points >= 0; got "
                f"{self.gbt_max_iter}, {self.gbt_max_train_points}"
            )

    def random_encoder_for(self, seed: int) -> int:
        """The seed of the random encoder that probe-random's run of ``seed`` reads."""
        return seed if self.random_encoder_seed is None else self.random_encoder_seed


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A label-efficiency study (``nufm study``): one fine-tuning run per size, mode and seed."""

    run: RunConfig
    """The fine-tuning run every study run starts from (its ``finetune`` section names the
    pretrained model, the labelled files, the split and ``n_test``); the study sets the task
    mode, ``finetune.n_train``, ``train.seed`` and, for linear modes, the learning rate."""
    sizes: tuple[int, ...] = (10, 100, 1000)
    """Labelled training events per run (nested subsets)."""
    modes: tuple[StudyMode, ...] = (
        "linear-random",
        "linear-geometry",
        "linear",
        "head",
        "full",
        "scratch",
    )
    """Modes to run at every size."""
    seeds: tuple[int, ...] = (0,)
    """Fine-tuning seeds (initialisation, batch order); the labelled subsets stay fixed."""
    network_seeds: tuple[int, ...] | None = None
    """Seeds of the costly modes (the training-loop modes linear, head, full, scratch,
    linear-random, linear-geometry; probe-random, which draws an encoder per seed; and the
    trees, gbt-geometry and gbt-fused) when they should differ from ``seeds`` (e.g. fewer, to
    fit a time budget, while the cheap linear-probe modes run every seed); None = ``seeds``."""
    linear_lr: float | None = 3e-2
    """Learning rate of the linear modes (linear, linear-random, linear-geometry; their min lr
    is 1% of it); None = ``run.optim.lr``. A single linear layer needs a larger rate than a
    network in the same step budget (docs/tasks.md)."""
    probe: ProbeStudyConfig = field(default_factory=ProbeStudyConfig)
    """Settings of the frozen-feature modes (probe, probe-random, probe-geometry,
    gbt-geometry, probe-fused, gbt-fused); the other modes ignore them."""
    steps: tuple[int, ...] = ()
    """Training steps of the runs at each size of ``sizes`` (a budget that grows with the
    labelled set, so every size can converge; warm-up 10%); empty = ``run.train.max_steps``
    for every size (the equal-compute view)."""

    workers: int = 1
    """Processes that run the training-loop rows (fine-tune, scratch, the linear and head
    modes) and the frozen-feature rows (probes, trees) side by side, each with this process's
    torch threads shared out; 1 = one after another in this process. First every event's
    per-event values (descriptors, token groups) are computed in this many forked processes;
    then this process encodes every frozen feature the probe rows read (features of one
    source are shared by its rows) and runs the classical rows; then the workers are forked
    from it and take the rows longest first. They read the per-event caches and the features
    and compute none. A row's result is the same as when it runs alone with the worker's
    thread count (rounding can differ from the count of ``workers=1``). Where the runs use
    CUDA the rows run one after another in this process (a forked process cannot use CUDA
    once its parent has)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"study: workers must be >= 1, got {self.workers}")
        if not self.sizes or min(self.sizes) <= 0:
            raise ConfigError(f"study: sizes must be positive, got {self.sizes}")
        if self.steps and (len(self.steps) != len(self.sizes) or min(self.steps) < 1):
            raise ConfigError(
                f"study: steps {self.steps} must give a positive step count for each of "
                f"the sizes {self.sizes}"
            )
        if not self.modes or not self.seeds or self.network_seeds == ():
            raise ConfigError("study: needs at least one mode and one seed")
        if self.run.finetune is None:
            raise ConfigError("study: run needs a finetune section (a task objective)")

    def seeds_for(self, mode: str) -> tuple[int, ...]:
        """The seeds ``mode`` runs: ``network_seeds`` for the costly modes (see there), else
        ``seeds``."""
        costly = mode not in PROBE_MODES or mode in ("probe-random", "gbt-geometry", "gbt-fused")
        costly = costly and mode not in EVENT_BASELINE_MODES  # seconds: every seed
        if costly and self.network_seeds is not None:
            return self.network_seeds
        return self.seeds


# ---------------------------------------------------------------- dict / YAML round trip


def config_to_dict(cfg: Any) -> Any:
    """A dataclass config as plain YAML/JSON-safe data (Paths become str, tuples lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Path):
        return str(cfg)
    if isinstance(cfg, (tuple, list)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def _union_members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _build(tp: Any, value: Any, where: str) -> Any:
    members = _union_members(tp)
    if value is None:
        if type(None) in members:
            return None
        raise ConfigError(f"config: {where} is null but must be {tp}")
    classes: list[type] = [
        m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)
    ]
    if classes:
        if not isinstance(value, dict):
            raise ConfigError(f"config: {where} must be a mapping, got {value!r}")
        cls = _pick_member(classes, value, where) if len(classes) > 1 else classes[0]
        return _from_dict(cls, value, where)
    if Path in members:
        return Path(value)
    for m in members:
        if typing.get_origin(m) is tuple:
            args = typing.get_args(m)
            if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
                args = (args[0],) * len(value)
            if len(args) != len(value):
                raise ConfigError(f"config: {where} needs {len(args)} values, got {value!r}")
            return tuple(
                _build(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
    return value


def _pick_member(classes: list[type], value: dict, where: str) -> type:
    """The union member a mapping describes: by its ``name`` literal when the members have one,
    else the only member whose fields include every key."""
    if all("name" in typing.get_type_hints(c) for c in classes):
        by_name = {typing.get_args(typing.get_type_hints(c)["name"])[0]: c for c in classes}
        if value.get("name") not in by_name:
            raise ConfigError(
                f"config: {where}.name={value.get('name')!r} is not one of {sorted(by_name)}"
            )
        return by_name[value["name"]]
    fits = [
        c
        for c in classes
        if set(value)
        <= {f.name for f in dataclasses.fields(c)} | set(getattr(c, "REMOVED_OPTIONS", {}))
    ]
    if len(fits) != 1:
        raise ConfigError(
            f"config: {where} matches {len(fits)} of "
            f"{[c.__name__ for c in classes]} by its keys; cannot tell which"
        )
    return fits[0]


def _from_dict(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    moved = getattr(cls, "MOVED_OPTIONS", {})  # configs saved before an option moved down
    if set(data) & set(moved) - names:
        data = dict(data)
        for k in sorted(set(data) & set(moved) - names):
            inner = data[moved[k]] = dict(data.get(moved[k]) or {})
            if k in inner:
                raise ConfigError(
                    f"config: {where + '.' if where else ''}{k} is given both where it was "
                    f"and where it moved to ({moved[k]}.{k}) in {cls.__name__}"
                )
            inner[k] = data.pop(k)
    removed = getattr(cls, "REMOVED_OPTIONS", {})  # configs saved before an option was removed
    for k in sorted(set(data) & set(removed) - names):
        if removed[k] is not None and data[k] != removed[k]:
            raise ConfigError(
                f"config: option {where + '.' if where else ''}{k}={data[k]!r} was removed "
                f"({cls.__name__}); only {removed[k]!r}, today's behaviour, can still be read"
            )
    data = {k: v for k, v in data.items() if k not in removed or k in names}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"config: unknown option(s) {unknown} in {where or 'the root'} "
            f"({cls.__name__}); known: {sorted(names)}"
        )
    kwargs = {k: _build(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def objective_config_from_dict(data: dict) -> ObjectiveConfig:
    """Rebuild (and validate) an objective or task config from :func:`config_to_dict` output."""
    return _build(ObjectiveConfig, data, "objective")


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild (and validate) a :class:`RunConfig` from :func:`config_to_dict` output.

    Missing keys take their defaults; unknown keys raise ``ValueError`` naming them.
    """
    return _from_dict(RunConfig, data, "")


def config_to_yaml(cfg: Any) -> str:
    """``cfg`` as the YAML text :func:`save_config` writes (a run's ``config.yaml``)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML."""
    Path(path).write_text(config_to_yaml(cfg))


def load_config(path: str | Path) -> RunConfig:
    """Read a ``config.yaml`` written by :func:`save_config`."""
    if not Path(path).is_file():
        raise NotFoundError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a YAML config file: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a config file (expected a YAML mapping at the top level)")
    try:
        return config_from_dict(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from e
