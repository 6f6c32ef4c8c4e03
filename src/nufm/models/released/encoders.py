"""Released models as nufm encoders: ``forward(PointBatch) -> EncoderOutput`` like every other
encoder, so embedding, search, anomaly scores, probes and fine-tuning take them unchanged.

Owns :class:`ReleasedPTv3Config` / :class:`ReleasedPTv3Encoder` (Panda, Sonata; per-point
features) and :class:`ReleasedPolarMAEConfig` / :class:`ReleasedPolarMAEEncoder` (per-token
features), and the preprocessing each released model was trained with
(:data:`PANDA_PREPROCESS`, :data:`POLARMAE_PREPROCESS`, from the reference data sets and
transforms; ``shared/reference/released-models/README.md`` §5). The batch must come from that
preprocessing: ``feat = [x, y, z, log-energy]`` in normalised units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from nufm.batch import PointBatch
from nufm.data.transforms import Preprocess
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts, pad
from nufm.models.base import Encoder, EncoderOutput
from nufm.models.released.panda import PandaConfig, PTv3Released
from nufm.models.released.polarmae import PolarMAEConfig, PolarMAEEncoder
from nufm.models.tokenizers import Tokens

PANDA_PREPROCESS = Preprocess(
    energy_threshold=0.0,
    center=384.0,
    scale=768 * math.sqrt(3) / 2,
    log_energy_eps=0.01,
    log_energy_max=20.0,
)
"""pimm's PILArNet transform: centre 384 voxels, scale 768 sqrt(3)/2, log energy with offset
0.01 MeV up to 20 MeV, no threshold (grid sampling at 0.001 is done by the encoder)."""

POLARMAE_PREPROCESS = Preprocess(
    energy_threshold=0.13,
    remove_low_energy=True,
    center=384.0,
    scale=384 * math.sqrt(3),
    log_energy_eps=0.13,
    log_energy_max=20.0,
)
"""PoLAr-MAE's PILArNet data set: low-energy scatters removed, E > 0.13 MeV kept, the energy
offset overwritten by the threshold (0.13, not the configured 0.01), scale 384 sqrt(3)."""


@dataclass(frozen=True, kw_only=True)
class ReleasedPTv3Config:
    """A released PTv3 backbone used as a per-point encoder."""

    ptv3: PandaConfig = field(default_factory=PandaConfig)
    """The backbone (Panda-Base by default)."""
    features: Literal["concat", "last"] = "concat"
    """Per-point features: every encoder level up-cast and concatenated (pimm's linear-probe
    features, 1232 wide for Panda-Base) or only the deepest level up-cast. A decoder model
    returns its decoder output."""
    grid_size: float = 0.001
    """GridSample cell in normalised units: ``grid_coord = floor(coord / g) - event min``."""

    @property
    def out_dim(self) -> int:
        if not self.ptv3.enc_mode:
            return self.ptv3.dec_channels[0]
        return sum(self.ptv3.enc_channels) if self.features == "concat" else self.ptv3.out_dim


@dataclass(frozen=True, kw_only=True)
class ReleasedPolarMAEConfig:
    """The released PoLAr-MAE encoder used as a per-token encoder."""

    polarmae: PolarMAEConfig = field(default_factory=PolarMAEConfig)
    """The encoder (PoLAr-MAE-Pretrain's by default)."""


def pimm_grid_coord(coord: Tensor, offset: Tensor, grid_size: float) -> Tensor:
    """``floor(coord / grid_size) - per-event minimum`` in float64 as pimm's GridSample.

    Args:
        coord: (N, 3) float normalised coordinates.
        offset: (B,) int64 event ends.
        grid_size: cell size.

    Returns:
        (N, 3) int64.
    """
    cell = torch.floor(coord.double() / grid_size).long()  # (N, 3)
    batch = offset_to_batch_index(offset)  # (N,)
    lo = cell.new_full((offset.numel(), 3), torch.iinfo(torch.int64).max)
    lo = lo.scatter_reduce(0, batch[:, None].expand(-1, 3), cell, "amin")  # (B, 3)
    return cell - lo[batch]


class ReleasedPTv3Encoder(Encoder):
    """A released PTv3 (``model``) on a nufm batch; point-level output."""

    def __init__(self, cfg: ReleasedPTv3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = PTv3Released(cfg.ptv3)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, batch: PointBatch, is_masked: Tensor | None = None) -> EncoderOutput:
        """Points of one voxel cell must be unique per event (the reference keeps one)."""
        grid = pimm_grid_coord(batch.coord, batch.offset, self.cfg.grid_size)
        out = self.model(batch.coord, batch.feat, grid, batch.offset, is_masked)
        if not self.cfg.ptv3.enc_mode:
            feat = out.feat
        elif self.cfg.features == "concat":
            feat = out.upcast()
        else:
            feat = out.feat
            for level in reversed(out.levels[1:]):
                assert level.inverse is not None
                feat = feat[level.inverse]
        return EncoderOutput(feat=feat, level="point", offset=batch.offset)


class ReleasedPolarMAEEncoder(Encoder):
    """The released PoLAr-MAE encoder (``model``) on a nufm batch; token-level output.

    Events are padded to (B, N_max, C) as the reference does; the MaskedLayerNorms couple the
    events of a batch (:mod:`nufm.models.released.polarmae`).
    """

    def __init__(self, cfg: ReleasedPolarMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = PolarMAEEncoder(cfg.polarmae)

    @property
    def out_dim(self) -> int:
        return self.cfg.polarmae.width

    def forward(self, batch: PointBatch) -> EncoderOutput:
        starts, counts = offset_to_starts(batch.offset), offset_to_counts(batch.offset)
        points, _ = pad(batch.feat, batch.offset)  # (B, N_max, C)
        B = counts.numel()
        tokens = self.model.tokenize(points, counts)
        pos = self.model.pos(tokens)  # (B, G, D)
        feat = self.model(self.model.embed(tokens), pos, tokens.token_valid)
        assert isinstance(feat, Tensor)
        global_idx = torch.where(
            tokens.grouping_idx >= 0, tokens.grouping_idx + starts[:, None, None], -1
        )  # (B, G, K) rows of the packed batch
        member = tokens.point_valid & tokens.token_valid[..., None]
        nufm_tokens = Tokens(
            feat=feat,
            pos=pos,
            center=tokens.centres,
            valid=tokens.token_valid,
            group_idx=torch.where(member, global_idx, -1),
            n_dropped=torch.zeros(B, dtype=torch.int64, device=feat.device),
        )
        return EncoderOutput(
            feat=feat,
            level="token",
            offset=batch.offset,
            valid=tokens.token_valid,
            tokens=nufm_tokens,
        )
