"""What every fine-tuning task shares: training modes, the task config base, and the
encoder-plus-neck backbone that gives per-point features from any encoder.

Modes (the PoLAr-MAE arXiv:2502.02558 and Panda arXiv:2512.01324 recipes; docs/references.md):

* ``linear``: frozen encoder, one ``nn.Linear`` on per-point encoder features. Token features
  reach the points by *parameter-free* inverse-distance interpolation
  (:class:`nufm.models.base.PointFeatures`), so this stays a true linear probe (PoLAr-MAE's
  "linear probing" trains an upsampler and an MLP, which is our ``head`` mode).
* ``head``: frozen encoder; a trainable neck (token encoders: PointNet++ feature propagation,
  arXiv:1706.02413) and an MLP head.
* ``full``: everything trains; encoder parameters use ``encoder_lr_scale`` times the base lr
  (and, with ``encoder_layer_decay`` < 1, less the nearer they are to the input).
  With ``frozen_encoder_fraction`` f > 0 the encoder stays frozen for the first f of the
  steps, so the neck and head learn on the pretrained features before those move (LP-FT,
  Kumar et al. 2022, arXiv:2202.10054); the task's ``set_schedule`` switches it.
* ``scratch``: the ``full`` architecture, head and learning rates with a randomly initialised
  encoder; only the encoder's starting weights differ from ``full`` (Panda: "the fft config
  without weights").

A frozen encoder has ``requires_grad=False``, runs under ``torch.no_grad()`` and stays in eval
mode when the task's ``.train()`` is called (dropout / drop-path / random FPS starts off).

Owns :data:`Mode`, :class:`TaskBaseConfig`, :class:`TaskBackbone`, :class:`TaskModule`,
:func:`batch_descriptors`, the per-event pipeline steps (:func:`task_pipeline_steps`) and
:func:`fit_descriptor_encoding`; the head pieces are in :mod:`nufm.tasks.heads`, loading
pretrained encoder weights into the backbone in :mod:`nufm.tasks.encoder_state` (reading
weights from files is :mod:`nufm.workflows.load`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar, get_args

import numpy as np
import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.transforms import Preprocess, Transform
from nufm.errors import ConfigError
from nufm.hub import LoadReport
from nufm.models.base import PointFeatures
from nufm.models.encoders import (
    Encoder,
    EncoderOutput,
    PTv3Config,
    TokenViTConfig,
    build_encoder,
    input_width,
    layer_count,
    layer_depth,
)
from nufm.models.geometric import EventDescriptors, LocalGeometryConfig, batch_descriptors
from nufm.models.numeric import PiecewiseLinearEncoding
from nufm.models.presets import PTV3_PRESETS
from nufm.models.released.encoders import ReleasedPolarMAEConfig, ReleasedPTv3Config
from nufm.models.serialized_patches import SerializedPatchConfig
from nufm.models.stream_fusion import StreamFusionConfig
from nufm.models.tokenizers import EventGrouper
from nufm.models.upsample import FeaturePropagation

log = logging.getLogger(__name__)

Mode = Literal["linear", "head", "full", "scratch"]
"""How a task trains: see the module docstring."""
MODES: tuple[str, ...] = get_args(Mode)
FROZEN_MODES: tuple[str, ...] = ("linear", "head")
"""Modes whose encoder never trains."""

EncoderConfig = (
    TokenViTConfig
    | PTv3Config
    | LocalGeometryConfig
    | ReleasedPTv3Config
    | ReleasedPolarMAEConfig
    | StreamFusionConfig
    | SerializedPatchConfig
)
"""Any encoder a task can use (:func:`nufm.models.encoders.build_encoder`); the
parameter-free :class:`LocalGeometryConfig` is the classical-features baseline; the
``Released*`` configs are the field's released models (:mod:`nufm.models.released`); a
:class:`StreamFusionConfig` gives fused latents (event-level tasks), or with ``point_stream``
tokens like a token ViT (per-point tasks); a :class:`SerializedPatchConfig` (forecasting's
encoder) gives causal features at its patch centres, tokens like a token ViT."""


def _gives_tokens(cfg: EncoderConfig) -> bool:
    """True = the encoder's features sit at token centres (interpolated to the points)."""
    match cfg:
        case TokenViTConfig() | SerializedPatchConfig():
            return True
        case StreamFusionConfig():
            return cfg.point_stream is not None
        case _:
            return False


def _default_encoder() -> EncoderConfig:
    return PTV3_PRESETS["tiny"]


@dataclass(frozen=True, kw_only=True)
class TaskBaseConfig:
    """Fields every task config has (encoder, mode, neck and head sizes)."""

    encoder: EncoderConfig = field(default_factory=_default_encoder)
    """Encoder architecture; must match the pretrained weights when they are loaded."""
    mode: Mode = "full"
    """linear | head | full | scratch (see :mod:`nufm.tasks.backbone`)."""
    encoder_lr_scale: float = 0.1
    """Learning-rate multiplier of encoder parameters in full and scratch modes."""
    encoder_layer_decay: float = 1.0
    """Full and scratch modes: layer-wise learning-rate decay (BEiT, arXiv:2106.08254; Panda's
    fine-tune uses 0.9 a block): an encoder parameter d blocks below the encoder's last block
    trains at ``encoder_lr_scale * encoder_layer_decay ** d`` (its place:
    :func:`nufm.models.encoders.layer_depth`; the input embedding is one below the first
    block); 1 = every encoder parameter at ``encoder_lr_scale``. Token ViT and PTv3
    encoders."""
    frozen_encoder_fraction: float = 0.0
    """Full mode: the fraction of the training steps at the start during which the encoder
    is frozen (no gradient, eval mode) and only the neck and head train, then everything
    trains (LP-FT, arXiv:2202.10054); 0 = trains from the first step. Other modes ignore it
    (scratch has no features to keep). One process only (a frozen phase leaves DDP's encoder
    gradients unset)."""
    neck_hidden: tuple[int, ...] = (128, 128)
    """Token encoders, head/full/scratch modes: widths of the feature-propagation MLP."""
    interp_k: int = 3
    """Token encoders: nearest token centres used to interpolate token features to points."""
    interp_power: float = 2.0
    """Token encoders: inverse-distance exponent of the interpolation weights."""
    head_hidden: tuple[int, ...] = (128,)
    """Widths of the head MLP's hidden layers (not used in linear mode)."""
    dropout: float = 0.0
    """Dropout after each hidden layer of the head MLP."""
    point_descriptors: tuple[int, ...] = ()
    """Neighbourhood sizes (points) of classical local-shape descriptors
    (:func:`nufm.models.geometric.point_shape_descriptors`, 6 per size) appended, batch-
    normalised, to the per-point features the head reads, in every mode; () = none. A skip
    connection of hand-made context beside the encoder (the study's ``probe-fused`` rows ask
    the same of frozen features): (8, 32, 128, 512) are the study's descriptor scales.
    Read from ``PointBatch.descriptors`` when the data pipeline computed them
    (:func:`task_pipeline_steps`), else computed in the forward pass."""
    descriptor_bins: int = 0
    """With ``point_descriptors``: 0 = batch-normalise them; B > 0 = encode each channel by B
    piecewise-linear quantile bins (:class:`nufm.models.numeric.PiecewiseLinearEncoding`)
    whose edges are fitted on the labelled training events before training
    (:func:`fit_descriptor_encoding`), so the head reads thresholds as trees do."""

    def __post_init__(self) -> None:
        if self.point_descriptors and min(self.point_descriptors) < 2:
            raise ValueError(
                f"{type(self).__name__}.point_descriptors needs sizes >= 2, got "
                f"{self.point_descriptors}"
            )
        if self.mode not in MODES:
            raise ValueError(f"{type(self).__name__}.mode={self.mode!r} is not one of {MODES}")
        if self.encoder_lr_scale <= 0:
            raise ValueError(
                f"{type(self).__name__}.encoder_lr_scale must be > 0, got {self.encoder_lr_scale}"
            )
        if not 0.0 < self.encoder_layer_decay <= 1.0:
            raise ValueError(
                f"{type(self).__name__}.encoder_layer_decay must be in (0, 1], got "
                f"{self.encoder_layer_decay}"
            )
        if self.encoder_layer_decay != 1.0:
            try:
                layer_count(self.encoder)  # refuses an encoder without a block order
            except ValueError as err:
                raise ValueError(
                    f"{type(self).__name__}.encoder_layer_decay={self.encoder_layer_decay}: {err}"
                ) from err
        if not 0.0 <= self.frozen_encoder_fraction < 1.0:
            raise ValueError(
                f"{type(self).__name__}.frozen_encoder_fraction must be in [0, 1), got "
                f"{self.frozen_encoder_fraction}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{type(self).__name__}.dropout must be in [0, 1), got {self.dropout}")
        if min(self.neck_hidden, default=1) < 1 or min(self.head_hidden, default=1) < 1:
            raise ValueError(
                f"{type(self).__name__}: neck_hidden / head_hidden widths must be "
                f">= 1, got {self.neck_hidden} / {self.head_hidden}"
            )
        if len(self.neck_hidden) == 0:
            raise ValueError(f"{type(self).__name__}.neck_hidden needs at least one width")
        if self.descriptor_bins < 0:
            raise ValueError(
                f"{type(self).__name__}.descriptor_bins must be >= 0, got {self.descriptor_bins}"
            )

    @property
    def is_frozen(self) -> bool:
        """True = the encoder never trains (linear and head modes)."""
        return self.mode in FROZEN_MODES


# --------------------------------------------------------------------------------------------
# per-point features from any encoder
# --------------------------------------------------------------------------------------------


class TaskBackbone(nn.Module):
    """Encoder plus (modes head/full/scratch, token encoders) a feature-propagation neck,
    plus, with ``point_descriptors``, batch-normalised local-shape descriptors.

    ``forward(batch) -> (N, out_dim)`` per-point features. In linear mode, and for point-level
    encoders in every mode, the features are the encoder's own (interpolated for tokens
    without parameters); the trainable neck concatenates the input ``feat`` after
    interpolation, as PoLAr-MAE's upsampler concatenates xyz. A pretraining
    mask token in the encoder (Sonata/Panda PTv3) and a fusion encoder's Perceiver-IO output
    block are never used here and are frozen, so DDP sees no unused trainable parameter.
    """

    def __init__(self, cfg: TaskBaseConfig) -> None:
        super().__init__()
        self.mode: Mode = cfg.mode
        self.is_frozen = cfg.is_frozen
        self.frozen_until = cfg.frozen_encoder_fraction if cfg.mode == "full" else 0.0
        """Training progress before which a full-mode encoder stays frozen (LP-FT)."""
        self.warming = False
        """True while the encoder is held frozen by :meth:`set_schedule`."""
        self.encoder: Encoder = build_encoder(cfg.encoder)
        self.point_features = PointFeatures(cfg.interp_k, cfg.interp_power)
        self.neck: FeaturePropagation | None = None
        self._out_dim = self.encoder.out_dim
        if _gives_tokens(cfg.encoder) and cfg.mode != "linear":
            self.neck = FeaturePropagation(
                token_dim=self.encoder.out_dim,
                point_dim=input_width(cfg.encoder),
                hidden=cfg.neck_hidden,
                k=cfg.interp_k,
                power=cfg.interp_power,
            )
            self._out_dim = self.neck.out_dim
        self.descriptor_ks = tuple(cfg.point_descriptors)
        self.descriptor_norm: nn.BatchNorm1d | None = None
        self.descriptor_encoding: PiecewiseLinearEncoding | None = None
        if self.descriptor_ks and cfg.descriptor_bins:
            self.descriptor_encoding = PiecewiseLinearEncoding(
                6 * len(self.descriptor_ks), cfg.descriptor_bins
            )
            self._out_dim += self.descriptor_encoding.out_dim
        elif self.descriptor_ks:
            self.descriptor_norm = nn.BatchNorm1d(6 * len(self.descriptor_ks))
            self._out_dim += 6 * len(self.descriptor_ks)
        if self.is_frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        for name, p in self.encoder.named_parameters():
            # pretraining only: fine-tuning never masks inputs, and a fusion encoder's
            # Perceiver-IO output block decodes pretraining queries (discarded, as FASERCal)
            if name.rsplit(".", 1)[-1] == "mask_token" or name.startswith("perceiver.decoder."):
                p.requires_grad_(False)

    @property
    def out_dim(self) -> int:
        """D of the per-point features."""
        return self._out_dim

    def train(self, mode: bool = True) -> TaskBackbone:
        super().train(mode)
        if self.is_frozen or self.warming:
            self.encoder.eval()  # a frozen encoder never leaves eval mode
        return self

    def set_schedule(self, progress: float) -> None:
        """Hold the encoder frozen while ``progress`` (step / (max_steps - 1)) is below
        ``frozen_encoder_fraction`` (full mode), then let it train."""
        warming = progress < self.frozen_until
        if warming and torch.distributed.is_available() and torch.distributed.is_initialized():
            raise ConfigError(
                "frozen_encoder_fraction > 0 runs in one process only: a frozen phase leaves "
                "the encoder's gradients unset, which DDP refuses"
            )
        if warming != self.warming:
            self.warming = warming
            self.train(self.training)

    def encode(self, batch: PointBatch) -> EncoderOutput:
        """Run the encoder (under no_grad when frozen, or held frozen by set_schedule)."""
        if self.is_frozen or self.warming:
            with torch.no_grad():
                return self.encoder(batch)
        return self.encoder(batch)

    def forward(self, batch: PointBatch) -> Tensor:
        out = self.encode(batch)
        if self.neck is None:
            feat = self.point_features(out, batch)  # (N, D)
        else:
            assert out.tokens is not None and out.valid is not None
            feat = self.neck(
                out.feat, out.tokens.center, out.valid, batch.coord, batch.offset, batch.feat
            )  # (N, D_neck)
        if not self.descriptor_ks:
            return feat
        shape = batch_descriptors(batch, self.descriptor_ks)  # (N, 6 * S)
        if self.descriptor_encoding is not None:
            shape = self.descriptor_encoding(shape).to(feat.dtype)  # (N, 6 * S * bins)
        else:
            assert self.descriptor_norm is not None
            shape = self.descriptor_norm(shape).to(feat.dtype)  # (N, 6 * S), stats in fp32
        return torch.cat([feat, shape], dim=1)  # (N, out_dim)


TaskConfigT = TypeVar("TaskConfigT", bound=TaskBaseConfig)


class TaskModule(nn.Module, Generic[TaskConfigT]):
    """Base of every task: a :class:`TaskBackbone` named ``backbone`` plus a head.

    Subclasses implement ``forward(batch) -> StepOutput`` and ``predict(batch) -> dict``;
    ``TaskModule[SemsegConfig]`` types ``self.cfg``.
    """

    cfg: TaskConfigT
    backbone: TaskBackbone
    encoder_load_report: LoadReport | None = None
    """Set by :func:`nufm.tasks.build.build_task` when pretrained weights were loaded."""

    def set_schedule(self, progress: float) -> None:
        """Training progress in [0, 1] before each step (the loop's ``HasSchedule``): the
        backbone's frozen phase (``frozen_encoder_fraction``)."""
        self.backbone.set_schedule(progress)

    def param_lr_scale(self, name: str) -> float:
        """Learning-rate multiplier of parameter ``name`` (from ``named_parameters``).

        Encoder parameters get ``cfg.encoder_lr_scale`` in full and scratch modes, times
        ``cfg.encoder_layer_decay`` to the power of their blocks below the last; everything
        else 1.0 (frozen parameters have ``requires_grad=False`` and are not optimised).
        """
        prefix = "backbone.encoder."
        local = name.removeprefix("module.")
        if not local.startswith(prefix) or self.cfg.mode not in ("full", "scratch"):
            return 1.0
        if self.cfg.encoder_layer_decay == 1.0:
            return self.cfg.encoder_lr_scale
        depth, deepest = layer_depth(self.cfg.encoder, local.removeprefix(prefix))
        return self.cfg.encoder_lr_scale * self.cfg.encoder_layer_decay ** (deepest - depth)

    def predict(self, batch: PointBatch) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def task_pipeline_steps(task: TaskBaseConfig, preprocess: Preprocess) -> list[Transform]:
    """The per-event steps a task wants before the augmentations: with ``point_descriptors``,
    :class:`~nufm.models.geometric.EventDescriptors` (the descriptors computed once per event
    instead of in every forward pass), then :func:`encoder_pipeline_steps`. Use one list for a
    run's train, val and test transforms, so its caches serve all three."""
    steps: list[Transform] = []
    if task.point_descriptors:
        steps.append(EventDescriptors(task.point_descriptors, preprocess))
    return [*steps, *encoder_pipeline_steps(task.encoder)]


def encoder_pipeline_steps(encoder: object) -> list[Transform]:
    """The per-event steps an encoder's input wants: for a one-detector token ViT, its
    tokenizer's :class:`~nufm.models.tokenizers.EventGrouper` (C-NMS centres and ball-query
    groups computed once per event, as in pretraining, instead of in every step; they do not
    change under the rigid augmentations, and a crop drops them, so the tokenizer groups
    again). Other encoders: none."""
    if isinstance(encoder, TokenViTConfig) and not encoder.other_tokenizers:
        return [EventGrouper(encoder.tokenizer)]
    return []


def fit_descriptor_encoding(
    task: TaskModule,
    events: Sequence[Event],
    transform: Transform,
    *,
    max_events: int = 1000,
    max_rows: int = 200_000,
    seed: int = 0,
) -> int:
    """Fit the quantile bins of a task's descriptor encoding (``descriptor_bins > 0``) on the
    descriptors of the labelled training ``events``; a task without one is left as it is.

    ``transform`` prepares an event as the run's pipeline does before its augmentations
    (preprocessing and :func:`task_pipeline_steps`; the descriptors are invariant to the
    rigid augmentations); its descriptors are read from the event when that pipeline
    attached them (so its cache serves the training steps too), else computed. At most
    ``max_events`` events (a seeded draw, so a large training set costs no pre-pass over all
    of it) and of their points at most ``max_rows`` (a uniform draw seeded by ``seed``) give
    the quantiles.

    Returns:
        points the edges were fitted on (0 when the task has no binned descriptors).

    Raises:
        ValueError: binned descriptors but no training event with a point.
    """
    encoding = task.backbone.descriptor_encoding
    if encoding is None:
        return 0
    ks = task.backbone.descriptor_ks
    rng = np.random.default_rng(seed)
    picked = range(len(events))
    if len(events) > max_events:
        picked = np.sort(rng.choice(len(events), max_events, replace=False)).tolist()
    rows = []
    for i in picked:
        event = transform(events[i], np.random.default_rng((seed, i)))
        rows.append(batch_descriptors(collate([event]), ks).cpu().numpy())  # (n, 6 * S)
    values = np.concatenate(rows) if rows else np.zeros((0, encoding.num_features), np.float32)
    if values.shape[0] == 0:
        raise ValueError(
            "fit_descriptor_encoding: the task bins its descriptors by training quantiles, "
            f"but its {len(events)} training events hold no point"
        )
    if values.shape[0] > max_rows:
        keep = rng.choice(values.shape[0], max_rows, replace=False)
        values = values[np.sort(keep)]
    encoding.fit(values)
    return int(values.shape[0])
