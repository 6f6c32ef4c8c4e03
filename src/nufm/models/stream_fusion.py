"""Multi-stream encoder for heterogeneous detectors: one tokenizer per sub-detector stream, a
shared transformer, and a Perceiver-IO latent bottleneck that fuses the streams (the FASERCal
foundation model, arXiv:2604.07037; code github saulam/faserDL ``model/minkmaevit.py``;
Perceiver IO arXiv:2107.14795; docs/references.md).

Owns :class:`StreamFusionConfig`, :class:`StreamFusionEncoder` and its outputs
(:class:`StreamTokens`, :class:`StreamFeatures`, :class:`FusionOutput`). One event goes

1. ``tokenize``: the points of stream s (``PointBatch.stream == s``) go to that stream's
   tokenizer, chosen by its config type:

   * :class:`~nufm.models.tokenizers.PointMAETokenizerConfig`: ball-query point groups,
   * :class:`~nufm.models.stream_tokenizers.PatchTokenizerConfig`: occupied patches of a voxel
     grid, optionally split into detector modules along z,
   * :class:`~nufm.models.stream_tokenizers.SetTokenizerConfig`: one token per event.

2. ``encode``: point-group tokens run through the shared ViT (attention within the event);
   patch tokens run through the same ViT blocks with attention restricted to the tokens of one
   event and one module, plus that module's learned summary ("CLS") token (the reference's
   intra-module blocks); set tokens go straight on. Tokens marked ``is_masked`` (MAE-hidden)
   take no part at all. The Perceiver's latents then cross-attend to every stream's tokens
   (patch tokens and module summaries are two Perceiver inputs, so they get distinct stream
   embeddings) and self-attend.

3. :meth:`StreamFusionEncoder.decode_queries`: arbitrary queries (for example the position
   embedding of hidden patches, projected to the latent width by an objective) cross-attend
   to the latents (:meth:`PerceiverIO.decode`).

``forward`` returns the latents (event-level tasks), or, with ``point_stream`` set, the tokens
of that point-group stream with the event's mean latent appended to each (per-point tasks:
:class:`~nufm.models.base.PointFeatures` interpolates them to the points). A detector read as
one stream needs no ``PointBatch.stream``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.offsets import offset_to_batch_index
from nufm.models.base import Encoder, EncoderOutput
from nufm.models.perceiver import PerceiverConfig, PerceiverIO
from nufm.models.stream_tokenizers import (
    PatchTokenizer,
    PatchTokenizerConfig,
    PatchTokens,
    SetTokenizer,
    SetTokenizerConfig,
    SetTokens,
)
from nufm.models.tokenizers import PointMAETokenizer, PointMAETokenizerConfig, Tokens
from nufm.models.vit import ViT, ViTConfig

StreamTokenizerConfig = PointMAETokenizerConfig | PatchTokenizerConfig | SetTokenizerConfig
"""Every tokenizer a stream can have."""


def _two_point_streams() -> tuple[StreamTokenizerConfig, ...]:
    return (PointMAETokenizerConfig(), PointMAETokenizerConfig())


def stream_token_dims(streams: Sequence[StreamTokenizerConfig], width: int) -> tuple[int, ...]:
    """Widths of the Perceiver inputs of ``streams`` around a ViT of ``width``, in order: per
    stream its tokens, then (patch streams only) its module summary tokens."""
    dims: list[int] = []
    for c in streams:
        match c:
            case PatchTokenizerConfig():
                dims += [width, width]
            case SetTokenizerConfig():
                dims.append(c.embed_dim)
            case PointMAETokenizerConfig():
                dims.append(width)
    return tuple(dims)


@dataclass(frozen=True, kw_only=True)
class StreamFusionConfig:
    """Multi-stream encoder: per-stream tokenizer, shared ViT, Perceiver-IO fusion.

    Example (FASERCal, widths of the reference "tiny": scintillator patches in 10 modules,
    ECAL, HCAL and muon spectrometer one token each)::

        D = 528
        StreamFusionConfig(
            streams=(
                PatchTokenizerConfig(in_channels=4, embed_dim=D, origin=(-0.24, -0.24, -1.0),
                    voxel_size=(0.01,) * 3, patch_size=(0.12, 0.12, 0.10),
                    grid_shape=(4, 4, 20), module_depth_patches=2),
                SetTokenizerConfig(in_channels=4, embed_dim=D),
                SetTokenizerConfig(in_channels=4, embed_dim=D),
                SetTokenizerConfig(in_channels=4, embed_dim=D),
            ),
            vit=ViTConfig(embed_dim=D, depth=4, num_heads=12),
            perceiver=PerceiverConfig(stream_dims=(D,) * 5, latent_dim=D, num_heads=12, depth=8),
        )
    """

    streams: tuple[StreamTokenizerConfig, ...] = field(default_factory=_two_point_streams)
    """One tokenizer config per sub-detector stream; ``PointBatch.stream`` holds ids 0..S-1."""
    vit: ViTConfig = field(default_factory=ViTConfig)
    """Transformer shared by the point-group and patch streams (run on each stream's tokens
    separately; on patch streams attention stays within one detector module)."""
    perceiver: PerceiverConfig = field(
        default_factory=lambda: PerceiverConfig(stream_dims=(384, 384))
    )
    """Latent fusion; ``stream_dims`` must equal :attr:`token_dims`."""
    point_stream: int | None = None
    """None: ``forward`` gives the fused latents (B, L, latent_dim). A stream id (of a
    point-group stream): ``forward`` gives that stream's encoded tokens with the event's mean
    latent appended, (B, G, vit.embed_dim + latent_dim), for per-point tasks."""

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("StreamFusionConfig: streams needs at least one tokenizer config")
        widths = {c.in_channels for c in self.streams}
        if len(widths) != 1:
            raise ValueError(
                f"StreamFusionConfig: every stream reads the same PointBatch.feat, but the "
                f"tokenizers' in_channels differ: {[c.in_channels for c in self.streams]}"
            )
        for s, c in enumerate(self.streams):
            if not isinstance(c, SetTokenizerConfig) and c.embed_dim != self.vit.embed_dim:
                raise ValueError(
                    f"StreamFusionConfig: stream {s} tokenizer embed_dim {c.embed_dim} "
                    f"!= vit.embed_dim {self.vit.embed_dim}"
                )
        if self.perceiver.stream_dims != self.token_dims:
            raise ValueError(
                f"StreamFusionConfig: perceiver.stream_dims {self.perceiver.stream_dims} "
                f"must be {self.token_dims} (one entry per point or set stream, two per "
                "patch stream: its tokens and its module summaries)"
            )
        if self.point_stream is not None and not (
            0 <= self.point_stream < self.num_streams
            and isinstance(self.streams[self.point_stream], PointMAETokenizerConfig)
        ):
            raise ValueError(
                f"StreamFusionConfig: point_stream {self.point_stream} must be the id of a "
                f"point-group stream (PointMAETokenizerConfig) among {self.num_streams}"
            )

    @property
    def num_streams(self) -> int:
        """S, the number of sub-detector streams."""
        return len(self.streams)

    @property
    def in_channels(self) -> int:
        """Channels C of ``PointBatch.feat`` (the same for every stream)."""
        return self.streams[0].in_channels

    @property
    def token_dims(self) -> tuple[int, ...]:
        """Widths of the Perceiver inputs, in order: per stream its tokens, then (patch
        streams only) its module summary tokens."""
        return stream_token_dims(self.streams, self.vit.embed_dim)


def build_stream_tokenizer(
    cfg: StreamTokenizerConfig,
) -> PointMAETokenizer | PatchTokenizer | SetTokenizer:
    """The tokenizer a stream config describes."""
    match cfg:
        case PatchTokenizerConfig():
            return PatchTokenizer(cfg)
        case SetTokenizerConfig():
            return SetTokenizer(cfg)
        case PointMAETokenizerConfig():
            return PointMAETokenizer(cfg)
        case _:
            raise TypeError(f"build_stream_tokenizer: no tokenizer for {type(cfg).__name__}")


@dataclass
class StreamTokens:
    """The tokens of one stream, with the rows of the batch they came from.

    Attributes:
        rows: (N_s,) int64 rows of the batch's points in this stream (packed order kept), so
            per-point bookkeeping of the tokens (``PatchTokens.point_slot``) maps back to the
            batch: ``batch.coord[rows]`` are the stream's points.
        offset: (B,) int64 exclusive event ends of the stream's points.
        tokens: the tokenizer's output (:class:`Tokens`, :class:`PatchTokens` or
            :class:`SetTokens`).
    """

    rows: Tensor
    offset: Tensor
    tokens: Tokens | PatchTokens | SetTokens


@dataclass
class StreamFeatures:
    """One stream's tokens after its transformer, as the Perceiver sees them.

    Attributes:
        feat: (B, G_s, D_s) tokens (0 where ``valid`` is False).
        valid: (B, G_s) bool, True = the token was encoded and fused (real and not hidden).
        summary: (B, M, D) module summary tokens (patch streams), else None.
        summary_valid: (B, M) bool, True = the module had a visible token (patch streams).
    """

    feat: Tensor
    valid: Tensor
    summary: Tensor | None = None
    summary_valid: Tensor | None = None


@dataclass
class FusionOutput:
    """Output of :meth:`StreamFusionEncoder.encode`.

    Attributes:
        latents: (B, L, latent_dim) fused latents.
        streams: one :class:`StreamFeatures` per stream, in stream-id order.
    """

    latents: Tensor
    streams: list[StreamFeatures]


class StreamFusionEncoder(Encoder):
    """Tokenize each stream, encode it (module-restricted for patch streams), fuse the streams
    with Perceiver-IO; use :meth:`tokenize` and :meth:`encode` to mask in between."""

    def __init__(self, cfg: StreamFusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizers = nn.ModuleList(build_stream_tokenizer(c) for c in cfg.streams)
        self.vit = ViT(cfg.vit)
        self.perceiver = PerceiverIO(cfg.perceiver)

    @property
    def out_dim(self) -> int:
        if self.cfg.point_stream is None:
            return self.cfg.perceiver.latent_dim
        return self.cfg.vit.embed_dim + self.cfg.perceiver.latent_dim

    def tokenize(self, batch: PointBatch) -> list[StreamTokens]:
        """Split the batch by ``batch.stream`` and tokenize every stream.

        Args:
            batch: packed events; ``stream`` (N,) int64 in 0..S-1 (None: every point is in
                stream 0, allowed for a one-stream encoder only).

        Returns:
            One :class:`StreamTokens` per stream, in stream-id order.
        """
        S = self.cfg.num_streams
        stream = batch.stream
        if stream is None:
            if S != 1:
                raise ValueError(
                    "StreamFusionEncoder: batch.stream is None; every point needs a "
                    f"stream id in 0..{S - 1}"
                )
            stream = torch.zeros(batch.num_points, dtype=torch.long, device=batch.coord.device)
        if batch.num_points and (int(stream.min()) < 0 or int(stream.max()) >= S):
            raise ValueError(
                f"StreamFusionEncoder: stream ids must be in [0, {S}), got "
                f"[{int(stream.min())}, {int(stream.max())}]"
            )
        B = batch.num_events
        event = offset_to_batch_index(batch.offset)  # (N,)
        out = []
        for s, tokenizer in enumerate(self.tokenizers):
            rows = torch.nonzero(stream == s)[:, 0]  # (N_s,)
            offset_s = torch.cumsum(torch.bincount(event[rows], minlength=B), 0)  # (B,)
            coord, feat = batch.coord[rows], batch.feat[rows]  # (N_s, 3), (N_s, C)
            try:
                tokens = tokenizer(coord, feat, offset_s)
            except ValueError as e:
                raise ValueError(f"StreamFusionEncoder: stream {s}: {e}") from e
            out.append(StreamTokens(rows=rows, offset=offset_s, tokens=tokens))
        return out

    def encode(
        self, streams: Sequence[StreamTokens], is_masked: Mapping[int, Tensor] | None = None
    ) -> FusionOutput:
        """Encode every stream and fuse them into latents.

        Args:
            streams: from :meth:`tokenize`.
            is_masked: stream id -> (B, G_s) bool, True = the token is hidden (MAE): never
                attended to, not fused, its own output is 0. Point-group and patch streams only;
                None / a missing id = every real token is visible.

        Returns:
            :class:`FusionOutput`: latents (B, L, latent_dim) and the per-stream features.
        """
        is_masked = is_masked or {}
        features: list[StreamFeatures] = []
        for s, st in enumerate(streams):
            tok = st.tokens
            hidden = is_masked.get(s)
            if isinstance(tok, SetTokens):
                if hidden is not None:
                    raise ValueError(f"StreamFusionEncoder: stream {s} is a set stream; no masks")
                features.append(StreamFeatures(feat=tok.feat, valid=tok.valid))
                continue
            visible = tok.valid if hidden is None else tok.valid & ~hidden  # (B, G_s)
            if isinstance(tok, PatchTokens):
                tokenizer = self.tokenizers[s]
                assert isinstance(tokenizer, PatchTokenizer)
                features.append(self.module_blocks(tok, visible, tokenizer.module_summary))
            else:
                feat = self.vit(tok.feat, tok.pos, visible).feat  # (B, G_s, D)
                features.append(StreamFeatures(feat=feat, valid=visible))
        inputs, valids = [], []
        for f in features:
            inputs.append(f.feat)
            valids.append(f.valid)
            if f.summary is not None and f.summary_valid is not None:
                inputs.append(f.summary)
                valids.append(f.summary_valid)
        return FusionOutput(latents=self.perceiver(inputs, valids), streams=features)

    def module_blocks(
        self, tokens: PatchTokens, visible: Tensor, summary_tokens: Tensor
    ) -> StreamFeatures:
        """The shared ViT on patch tokens, attention restricted to one (event, module).

        Every (event, module) with a visible token becomes one sequence (a row of the ViT's
        batch): the module's summary token, then its visible tokens with their position
        embedding.

        Args:
            tokens: a patch stream's tokens.
            visible: (B, G) bool, True = the token takes part.
            summary_tokens: (M, D) learned summary token of every module.

        Returns:
            :class:`StreamFeatures` with feat (B, G, D), valid = ``visible``, summary (B, M, D)
            and summary_valid (B, M).
        """
        B, G, D = tokens.feat.shape
        M = summary_tokens.shape[0]
        b, g = torch.nonzero(visible, as_tuple=True)  # (T,), (T,) row-major
        key = b * M + tokens.module_index[b, g]  # (T,) sequence key = event * M + module
        seq_key, seq = torch.unique(key, return_inverse=True)  # (Q,), (T,)
        Q, T = seq_key.shape[0], seq.shape[0]
        counts = torch.bincount(seq, minlength=Q)  # (Q,)
        order = torch.argsort(seq, stable=True)  # (T,) tokens grouped by sequence, g ascending
        rank = torch.empty_like(seq)
        rank[order] = (
            torch.arange(T, device=seq.device) - (torch.cumsum(counts, 0) - counts)[seq[order]]
        )  # (T,) place of the token in its sequence
        K = int(counts.max()) + 1 if Q else 1  # summary + tokens
        x = tokens.feat.new_zeros(Q, K, D)
        x[:, 0] = summary_tokens[seq_key % M].to(x.dtype)
        x[seq, 1 + rank] = tokens.feat[b, g]  # (Q, K, D)
        pos = torch.zeros_like(x)
        pos[seq, 1 + rank] = tokens.pos[b, g]  # (Q, K, D); summaries get none
        seq_valid = torch.zeros(Q, K, dtype=torch.bool, device=x.device)
        seq_valid[:, 0] = True
        seq_valid[seq, 1 + rank] = True  # (Q, K)
        x = self.vit(x, pos, seq_valid).feat  # (Q, K, D): the shared ViT, one module a row
        feat = tokens.feat.new_zeros(B, G, D)
        feat[b, g] = x[seq, 1 + rank]  # (B, G, D)
        summary = tokens.feat.new_zeros(B, M, D)
        summary[seq_key // M, seq_key % M] = x[:, 0]  # (B, M, D)
        summary_valid = torch.zeros(B, M, dtype=torch.bool, device=x.device)
        summary_valid[seq_key // M, seq_key % M] = True  # (B, M)
        return StreamFeatures(
            feat=feat, valid=visible, summary=summary, summary_valid=summary_valid
        )

    def decode_queries(self, queries: Tensor, latents: Tensor) -> Tensor:
        """Perceiver-IO output step: every query attends to the latents of its event.

        Args:
            queries: (B, Q, latent_dim) queries (e.g. ``PatchTokens.pos`` of hidden patches,
                projected to the latent width by the objective).
            latents: (B, L, latent_dim) from :meth:`encode`.

        Returns:
            (B, Q, latent_dim); a query's output depends only on itself and the latents.
        """
        return self.perceiver.decode(queries, latents)

    def forward(
        self, batch: PointBatch, is_masked: Mapping[int, Tensor] | None = None
    ) -> EncoderOutput:
        """Latents (B, L, latent_dim), or with ``point_stream`` set that stream's tokens
        (B, G, D + latent_dim) with the event's mean latent appended (level "token"); ``hidden``
        holds every stream's encoded tokens under key s.

        ``is_masked`` as in :meth:`encode` (per stream, per token of :meth:`tokenize`).
        """
        streams = self.tokenize(batch)
        out = self.encode(streams, is_masked)
        hidden = {s: f.feat for s, f in enumerate(out.streams)}
        s = self.cfg.point_stream
        if s is None:
            return EncoderOutput(
                feat=out.latents, level="latent", offset=batch.offset, hidden=hidden
            )
        tokens = streams[s].tokens
        assert isinstance(tokens, Tokens)
        f = out.streams[s]
        context = out.latents.mean(1, keepdim=True).expand(-1, f.feat.shape[1], -1)  # (B, G, L_D)
        feat = torch.cat([f.feat, context.to(f.feat.dtype)], -1) * f.valid[..., None]
        return EncoderOutput(
            feat=feat,  # (B, G, D + latent_dim); 0 on padding and hidden tokens
            level="token",
            offset=batch.offset,
            valid=f.valid,
            tokens=tokens,
            hidden=hidden,
        )


__all__ = [
    "FusionOutput",
    "StreamFeatures",
    "StreamFusionConfig",
    "StreamFusionEncoder",
    "StreamTokenizerConfig",
    "StreamTokens",
    "build_stream_tokenizer",
    "stream_token_dims",
]
