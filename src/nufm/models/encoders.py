"""Encoders over a :class:`nufm.batch.PointBatch` and their dispatch (STYLE.md sections 2, 3, 6).

Owns :class:`TokenViTConfig`, the learned encoders, :func:`build_encoder` and
:func:`layer_count` / :func:`layer_depth` (each parameter's place for layer-wise
learning-rate decay)
(:class:`EncoderOutput` and the :class:`Encoder` base class live in :mod:`nufm.models.base`
and are imported here):

* :class:`TokenViTEncoder`: PoLAr-MAE tokenizer + ViT (arXiv:2502.02558); per-token features.
* :class:`PTv3Encoder`: serialized point transformer (PTv3 arXiv:2312.10035, Panda
  arXiv:2512.01324); per-point features.
* :class:`LocalGeometryEncoder` (in :mod:`nufm.models.geometric`): parameter-free local-shape
  descriptors, the classical baseline; per-point features.
* :class:`SerializedPatchEncoder` (in :mod:`nufm.models.serialized_patches`): ordered point
  patches and a causal transformer, the encoder of next-patch forecasting (after FM4NPP,
  arXiv:2508.14087); per-patch tokens.
* :class:`StreamFusionEncoder` (in :mod:`nufm.models.stream_fusion`): one tokenizer per
  sub-detector stream (point groups, voxel patches in detector modules, or one token per
  event), a shared ViT, and a Perceiver-IO latent bottleneck fusing the streams (FASERCal,
  arXiv:2604.07037); latents.

Encoders return features, never losses, and read only ``coord``, ``feat``, ``offset`` (and
``grid_coord`` / ``stream``) of the batch, so they are detector-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.errors import InputError
from nufm.models.base import Encoder, EncoderOutput
from nufm.models.geometric import LocalGeometryConfig, LocalGeometryEncoder
from nufm.models.ptv3 import PTv3, PTv3Config
from nufm.models.released.encoders import (
    ReleasedPolarMAEConfig,
    ReleasedPolarMAEEncoder,
    ReleasedPTv3Config,
    ReleasedPTv3Encoder,
)
from nufm.models.serialized_patches import SerializedPatchConfig, SerializedPatchEncoder
from nufm.models.stream_fusion import StreamFusionConfig, StreamFusionEncoder, stream_token_dims
from nufm.models.stream_tokenizers import SetTokenizerConfig
from nufm.models.tokenizers import PointMAETokenizer, PointMAETokenizerConfig, Tokens
from nufm.models.vit import ViT, ViTConfig, ViTOutput, packed_layout


@dataclass(frozen=True, kw_only=True)
class DetectorTokenizer:
    """The input embedding of one more detector in a cross-experiment token ViT."""

    detector: str
    """The detector (``nufm.data.detectors``) whose batches this tokenizer embeds."""
    tokenizer: PointMAETokenizerConfig
    """Its grouping (sized to its hits or voxels) and group embedding (its feature channels)."""


@dataclass(frozen=True, kw_only=True)
class TokenViTConfig:
    """PoLAr-MAE-style encoder: volumetric tokenizer followed by a ViT."""

    tokenizer: PointMAETokenizerConfig = field(default_factory=PointMAETokenizerConfig)
    """Centre selection, grouping and group embedding."""
    detector: str | None = None
    """With ``other_tokenizers``: the detector whose batches ``tokenizer`` embeds (batches that
    name no detector are LArTPC ones). None for a one-detector encoder, whose ``tokenizer``
    embeds every batch."""
    other_tokenizers: tuple[DetectorTokenizer, ...] = ()
    """A cross-experiment encoder: the tokenizers of more detectors, all feeding the one ViT
    (detector-specific input embeddings, shared core); a batch is embedded by the tokenizer of
    its ``PointBatch.detector``. :func:`select_detector` makes a one-detector encoder of it."""
    vit: ViTConfig = field(default_factory=ViTConfig)
    """Transformer over the tokens."""
    return_blocks: tuple[int, ...] = ()
    """Block indices whose hidden states ``forward`` returns in ``EncoderOutput.hidden``."""
    mask_token: bool = False
    """True = a learned mask token that ``forward(batch, is_masked)`` puts in place of the
    embedding of tokens whose points are mostly masked (self-distillation pretraining, as the
    iBOT masked-token input, arXiv:2111.07832)."""

    def __post_init__(self) -> None:
        for t in (self.tokenizer, *(o.tokenizer for o in self.other_tokenizers)):
            if t.embed_dim != self.vit.embed_dim:
                raise ValueError(
                    f"TokenViTConfig: tokenizer embed_dim {t.embed_dim} "
                    f"!= vit.embed_dim {self.vit.embed_dim}"
                )
        names = [o.detector for o in self.other_tokenizers]
        if names and self.detector is None:
            raise ValueError("TokenViTConfig: other_tokenizers need the first one's detector")
        if len(set(names) | {self.detector}) != len(names) + 1 or any("." in n for n in names):
            raise ValueError(
                f"TokenViTConfig: one tokenizer per detector, names without '.'; got "
                f"{self.detector} and {names}"
            )

    @property
    def detectors(self) -> tuple[str, ...]:
        """The detectors with their own tokenizer (empty for a one-detector encoder)."""
        if not self.other_tokenizers:
            return ()
        assert self.detector is not None
        return (self.detector, *(o.detector for o in self.other_tokenizers))

    def other_tokenizer_name(self, detector: str | None) -> str | None:
        """Which tokenizer embeds ``detector``'s batches (None = a LArTPC batch): None for
        ``tokenizer``, else the name of one of ``other_tokenizers``.

        Raises:
            InputError: a cross-experiment encoder has no tokenizer for ``detector``.
        """
        if not self.other_tokenizers:
            return None
        name = detector or "lartpc"
        if name == self.detector:
            return None
        if any(o.detector == name for o in self.other_tokenizers):
            return name
        raise InputError(
            f"a batch of {name} events, but this cross-experiment encoder embeds only "
            f"{', '.join(self.detectors)}"
        )

    def tokenizer_for(self, detector: str | None) -> PointMAETokenizerConfig:
        """The tokenizer config of ``detector``'s batches (None = a LArTPC batch)."""
        name = self.other_tokenizer_name(detector)
        return next(
            (o.tokenizer for o in self.other_tokenizers if o.detector == name), self.tokenizer
        )


def select_detector(cfg: TokenViTConfig, detector: str) -> TokenViTConfig:
    """The one-detector encoder of a cross-experiment one: ``detector``'s tokenizer and the
    shared ViT (:func:`select_detector_state` gives its weights); a one-detector encoder is
    returned as it is."""
    if not cfg.other_tokenizers:
        return cfg
    return replace(cfg, tokenizer=cfg.tokenizer_for(detector), detector=None, other_tokenizers=())


def select_detector_state(
    state: dict[str, Tensor], cfg: TokenViTConfig, detector: str
) -> dict[str, Tensor]:
    """An encoder state dict of ``cfg`` (keys relative to the encoder) -> that of
    :func:`select_detector` (``cfg``, ``detector``): ``detector``'s tokenizer becomes
    ``tokenizer.``, the other detectors' tokenizers are dropped, the core is kept."""
    if not cfg.other_tokenizers:
        return dict(state)
    name = cfg.other_tokenizer_name(detector)  # an unknown detector is refused
    own = "tokenizer." if name is None else f"other_tokenizers.{name}."
    out = {}
    for key, value in state.items():
        if key.startswith(own):
            out["tokenizer." + key[len(own) :]] = value
        elif not key.startswith(("tokenizer.", "other_tokenizers.")):
            out[key] = value
    return out


class TokenViTEncoder(Encoder):
    """Tokenizer + ViT; use :meth:`tokenize` and :meth:`encode_tokens` to mask in between."""

    def __init__(self, cfg: TokenViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = PointMAETokenizer(cfg.tokenizer)
        self.other_tokenizers = (
            nn.ModuleDict(
                {o.detector: PointMAETokenizer(o.tokenizer) for o in cfg.other_tokenizers}
            )
            if cfg.other_tokenizers
            else None
        )
        self.vit = ViT(cfg.vit)
        self.mask_token = nn.Parameter(torch.zeros(cfg.vit.embed_dim)) if cfg.mask_token else None
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    @property
    def out_dim(self) -> int:
        return self.cfg.vit.embed_dim

    def tokenizer_for(self, detector: str | None) -> PointMAETokenizer:
        """The tokenizer of ``detector``'s batches (``TokenViTConfig.tokenizer_for``)."""
        name = self.cfg.other_tokenizer_name(detector)  # refuses one it has none for
        if name is None or self.other_tokenizers is None:
            return self.tokenizer
        return cast(PointMAETokenizer, self.other_tokenizers[name])

    def tokenize(self, batch: PointBatch) -> Tokens:
        """Packed batch -> padded :class:`Tokens` (from ``batch.groups`` when the data pipeline
        grouped the points already), by the tokenizer of the batch's detector."""
        tokenizer = self.tokenizer_for(batch.detector)
        return tokenizer(batch.coord, batch.feat, batch.offset, batch.groups)

    def encode_tokens(
        self, tokens: Tokens, is_masked: Tensor | None = None, return_blocks: Sequence[int] = ()
    ) -> ViTOutput:
        """Run the ViT on tokens.

        Args:
            tokens: from :meth:`tokenize`.
            is_masked: (B, G) bool, True = token hidden from the encoder (never attended to;
                its own output is meaningless). None = every valid token is visible.
            return_blocks: block indices whose hidden states to return.
        """
        visible = tokens.valid if is_masked is None else tokens.valid & ~is_masked
        return self.vit(tokens.feat, tokens.pos, visible, return_blocks)

    def encode_rows(self, tokens: Tokens, which: Tensor, feat_rows: Tensor) -> Tensor:
        """Run the ViT on the tokens ``which`` alone, as packed rows (no padded tensor).

        Args:
            tokens: from :meth:`tokenize` (its ``feat`` is not read).
            which: (B, G) bool, the tokens that take part (the others are never attended to).
            feat_rows: (Q', D) their embeddings, in the row-major order of ``which``.

        Returns:
            (Q', D) their outputs in the same order: ``encode_tokens`` on tokens with these
            embeddings and ``which`` visible, read at ``which``.
        """
        rows, _ = self.vit.forward_rows(feat_rows, tokens.pos[which], *packed_layout(which))
        return rows

    def mask_tokens(self, tokens: Tokens, is_masked: Tensor) -> Tokens:
        """Replace the embedding of tokens whose group points are mostly masked.

        Args:
            tokens: from :meth:`tokenize`.
            is_masked: (N,) bool per packed point.

        Returns:
            ``tokens`` with ``feat`` = the mask token where more than half of a token's valid
            group points are masked (positions are kept; every token stays visible).
        """
        if self.mask_token is None:
            raise ValueError("TokenViTEncoder: is_masked given but cfg.mask_token is False")
        member = tokens.group_idx >= 0  # (B, G, K)
        hit = is_masked[tokens.group_idx.clamp(min=0)] & member  # (B, G, K)
        hidden = (2 * hit.sum(-1) > member.sum(-1)) & tokens.valid  # (B, G)
        feat = torch.where(
            hidden[..., None], self.mask_token.to(tokens.feat.dtype), tokens.feat
        )  # (B, G, D)
        return replace(tokens, feat=feat)

    def forward(self, batch: PointBatch, is_masked: Tensor | None = None) -> EncoderOutput:
        """``is_masked`` (N,) bool: tokens made mostly of these points get the mask token."""
        tokens = self.tokenize(batch)
        if is_masked is not None:
            tokens = self.mask_tokens(tokens, is_masked)
        out = self.encode_tokens(tokens, return_blocks=self.cfg.return_blocks)
        return EncoderOutput(
            feat=out.feat,
            level="token",
            offset=batch.offset,
            valid=tokens.valid,
            tokens=tokens,
            hidden=out.hidden,
        )


class PTv3Encoder(Encoder):
    """PTv3 over packed points; per-point features at full resolution."""

    def __init__(self, cfg: PTv3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = PTv3(cfg)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, batch: PointBatch, is_masked: Tensor | None = None) -> EncoderOutput:
        """``is_masked`` (N,) bool: points whose stem features become the mask token."""
        out = self.backbone(batch.coord, batch.feat, batch.offset, batch.grid_coord, is_masked)
        return EncoderOutput(feat=out.feat, level="point", offset=batch.offset, ptv3=out)


EncoderConfigs = (
    TokenViTConfig
    | PTv3Config
    | StreamFusionConfig
    | SerializedPatchConfig
    | LocalGeometryConfig
    | ReleasedPTv3Config
    | ReleasedPolarMAEConfig
)
"""Every encoder config :func:`build_encoder` takes."""


def input_width(cfg: EncoderConfigs) -> int:
    """Per-point feature channels (``PointBatch.feat`` width) the encoder takes."""
    match cfg:
        case ReleasedPTv3Config():
            return cfg.ptv3.in_channels
        case ReleasedPolarMAEConfig():
            return cfg.polarmae.num_channels
        case LocalGeometryConfig() | PTv3Config() | SerializedPatchConfig():
            return cfg.in_channels
        case StreamFusionConfig():
            return cfg.in_channels
        case TokenViTConfig():
            return cfg.tokenizer.in_channels
        case _:
            raise TypeError(f"input_width: no encoder config {type(cfg).__name__}")


def with_input_width(cfg: EncoderConfigs, width: int) -> EncoderConfigs:
    """The same architecture taking ``width`` feature channels (a fresh encoder for another
    detector's inputs); released architectures are fixed and refused."""
    match cfg:
        case ReleasedPTv3Config() | ReleasedPolarMAEConfig():
            raise ValueError(
                f"{type(cfg).__name__}: a released architecture takes "
                f"{input_width(cfg)} channels, not {width}"
            )
        case LocalGeometryConfig() | PTv3Config() | SerializedPatchConfig():
            return replace(cfg, in_channels=width)
        case StreamFusionConfig():
            return replace(cfg, streams=tuple(replace(c, in_channels=width) for c in cfg.streams))
        case TokenViTConfig():
            return replace(cfg, tokenizer=replace(cfg.tokenizer, in_channels=width))
        case _:
            raise TypeError(f"with_input_width: no encoder config {type(cfg).__name__}")


def core_prefixes(cfg: EncoderConfigs) -> tuple[str, ...]:
    """State-dict prefixes of the encoder's detector-independent core, the part carried from
    one detector to another (the FASERCal study's transfer, arXiv:2604.07037); the rest (the
    input embeddings: tokenizers, a PTv3 stem, the Perceiver's per-stream projections, a
    serialized-patch encoder's point-net and position embedding) is detector-specific and
    starts fresh on the new detector."""
    match cfg:
        case TokenViTConfig():
            return ("vit.",)
        case StreamFusionConfig():
            return (
                "vit.",
                "perceiver.latents",
                "perceiver.cross.",
                "perceiver.self_blocks.",
                "perceiver.norm.",
            )
        case PTv3Config():
            return ("backbone.pools.", "backbone.enc.", "backbone.unpool", "backbone.dec.")
        case SerializedPatchConfig():
            return ("blocks.", "norm.")
        case _:
            raise ValueError(f"{type(cfg).__name__}: no detector-independent core to transfer")


def with_detector_inputs(core: EncoderConfigs, inputs: EncoderConfigs) -> EncoderConfigs:
    """The architecture of ``core`` (a pretrained encoder) with the detector-specific input
    embedding of ``inputs`` (an encoder made for the new detector: its tokenizer settings and
    feature width), sized to the core's width.

    Raises:
        ValueError: the two are different kinds of encoder.
    """
    match core, inputs:
        case TokenViTConfig(), TokenViTConfig():
            tokenizer = replace(inputs.tokenizer, embed_dim=core.vit.embed_dim)
            return replace(
                core, tokenizer=tokenizer, mask_token=False, detector=None, other_tokenizers=()
            )
        case PTv3Config(), PTv3Config():
            return replace(core, in_channels=inputs.in_channels, mask_token=False)
        case SerializedPatchConfig(), SerializedPatchConfig():
            # ordering, patches and patch embedding are the new detector's; blocks the core's
            return replace(
                inputs,
                embed_dim=core.embed_dim,
                depth=core.depth,
                num_heads=core.num_heads,
                mlp_ratio=core.mlp_ratio,
                drop_path=core.drop_path,
            )
        case StreamFusionConfig(), StreamFusionConfig():
            # the new detector's streams at the core's width; the Perceiver's per-stream
            # projections follow them (not part of the core)
            width = core.vit.embed_dim
            streams = tuple(
                c if isinstance(c, SetTokenizerConfig) else replace(c, embed_dim=width)
                for c in inputs.streams
            )
            perceiver = replace(core.perceiver, stream_dims=stream_token_dims(streams, width))
            return replace(
                core, streams=streams, perceiver=perceiver, point_stream=inputs.point_stream
            )
        case _:
            raise ValueError(
                f"with_detector_inputs: a {type(core).__name__} core cannot take the inputs of a "
                f"{type(inputs).__name__}; fine-tune a preset of the same encoder kind"
            )


def layer_count(cfg: EncoderConfigs) -> int:
    """The number of blocks of the encoder built from ``cfg``, in the order they run: the
    deepest :func:`layer_depth`.

    Raises:
        ValueError: an encoder kind without a block order here (the one place that says which
            encoders layer-wise decay supports).
    """
    match cfg:
        case TokenViTConfig():
            return cfg.vit.depth
        case PTv3Config():
            return sum(cfg.enc_depths) + (0 if cfg.enc_mode else sum(cfg.dec_depths))
        case _:
            raise ValueError(
                "layer-wise learning-rate decay needs a token ViT or PTv3 encoder: no block "
                f"order for a {type(cfg).__name__} encoder; leave encoder_layer_decay at 1"
            )


def layer_depth(cfg: EncoderConfigs, name: str) -> tuple[int, int]:
    """Where parameter ``name`` of the encoder built from ``cfg`` sits between input and
    output, for layer-wise learning-rate decay (BEiT, arXiv:2106.08254; Panda's fine-tune
    decays 0.9 a block, counted from the last).

    Returns:
        (depth, deepest): 0 = the input embedding (tokenizers, a PTv3 stem, mask tokens);
        the k-th block in forward order = k; deepest = :func:`layer_count`. What joins two
        blocks (a PTv3 pooling or unpooling projection) has the depth of the block before it,
        a ViT's final norm that of the last block.

    Raises:
        ValueError: an encoder kind without a block order (:func:`layer_count`), or a
            parameter name this function does not place (so a new module cannot slip in at
            full rate unseen).
    """
    deepest = layer_count(cfg)
    match cfg:
        case TokenViTConfig():
            return _token_vit_depth(cfg, name), deepest
        case PTv3Config():
            return _ptv3_depth(cfg, name), deepest
        case _:  # layer_count refused it
            raise AssertionError(type(cfg).__name__)


def _token_vit_depth(cfg: TokenViTConfig, name: str) -> int:
    if name.startswith(("tokenizer.", "other_tokenizers.")) or name == "mask_token":
        return 0
    if name.startswith("vit.blocks."):
        return int(name.split(".")[2]) + 1
    if name.startswith("vit.norm."):
        return cfg.vit.depth
    raise ValueError(f"layer_depth: token ViT parameter {name!r} has no depth")


def _ptv3_depth(cfg: PTv3Config, name: str) -> int:
    enc = [sum(cfg.enc_depths[:s]) for s in range(len(cfg.enc_depths) + 1)]  # blocks before
    dec = () if cfg.enc_mode else cfg.dec_depths
    # decoder stages run coarsest first: stage s follows every encoder block and the decoder
    # stages above it
    dec_before = [enc[-1] + sum(dec[s + 1 :]) for s in range(len(dec))]
    parts = name.split(".")
    if parts[0] != "backbone" or len(parts) < 2:
        raise ValueError(f"layer_depth: PTv3 parameter {name!r} has no depth")
    match parts[1]:
        case "stem" | "mask_token":
            return 0
        case "pools":  # pools[j] feeds encoder stage j + 1
            return enc[int(parts[2]) + 1]
        case "enc":
            return enc[int(parts[2])] + int(parts[3]) + 1
        case "unpool_up" | "unpool_skip":  # feed decoder stage s
            return dec_before[int(parts[2])]
        case "dec":
            return dec_before[int(parts[2])] + int(parts[3]) + 1
        case _:
            raise ValueError(f"layer_depth: PTv3 parameter {name!r} has no depth")


def build_encoder(cfg: EncoderConfigs) -> Encoder:
    """Build the encoder a config describes."""
    match cfg:
        case ReleasedPTv3Config():
            return ReleasedPTv3Encoder(cfg)
        case ReleasedPolarMAEConfig():
            return ReleasedPolarMAEEncoder(cfg)
        case LocalGeometryConfig():
            return LocalGeometryEncoder(cfg)
        case StreamFusionConfig():
            return StreamFusionEncoder(cfg)
        case SerializedPatchConfig():
            return SerializedPatchEncoder(cfg)
        case TokenViTConfig():
            return TokenViTEncoder(cfg)
        case PTv3Config():
            return PTv3Encoder(cfg)
        case _:
            raise TypeError(f"build_encoder: no encoder for config type {type(cfg).__name__}")
