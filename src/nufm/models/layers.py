"""Small building blocks shared by the nufm encoders: drop-path, MLP, layer scale, masked SDPA
self/cross attention, the pre-norm transformer block, and row buckets.

The transformer follows ViT (arXiv:2010.11929) as used by Point-MAE / PoLAr-MAE
(arXiv:2502.02558; docs/references.md) with one deliberate difference: normalisation is the standard
per-token ``nn.LayerNorm``, not PoLAr-MAE's batch-global ``MaskedLayerNorm``, so an event's
outputs never depend on the other events in its batch.

Row buckets (:func:`bucket_rows`, :class:`RowSequential`): on the CPU, a bf16 matrix product
runs through oneDNN, which compiles a kernel for every new shape (a cache miss costs more than
the product at these sizes). Packed points and tokens give a new row count at every step, so
row-wise layers pad their rows to one of 8 sizes per octave (at most 12.5 % extra rows) and
attention pads each event's tokens likewise (padded keys masked; events of equal buckets share
one batched call), and the kernels are reused.
The padding never changes a real row's result beyond the rounding of the summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_REDUCED = (torch.bfloat16, torch.float16)
_BUCKETS = [True]  # switched off only to measure what the buckets save (nufm bench)


def set_row_buckets(enabled: bool) -> bool:
    """Turn row buckets on or off for the whole process (on by default; ``nufm bench``
    measures both); returns the previous setting."""
    previous = _BUCKETS[0]
    _BUCKETS[0] = bool(enabled)
    return previous


def row_bucket(n: int) -> int:
    """The row count ``n`` is padded to: the next multiple of ``max(8, 2**(bits(n) - 4))``,
    8 sizes per octave, so at most n / 8 extra rows (``row_bucket(1000) == 1024``)."""
    step = max(8, 1 << max(n.bit_length() - 4, 0))
    return -(-n // step) * step


def wants_buckets(x: Tensor) -> bool:
    """True where padding rows pays: a CPU tensor in bf16 / fp16, or under CPU autocast (and
    buckets are on, :func:`set_row_buckets`)."""
    return (
        _BUCKETS[0]
        and x.device.type == "cpu"
        and (x.dtype in _REDUCED or torch.is_autocast_enabled("cpu"))
    )


def bucket_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` for a row-wise ``fn`` (row i of the result depends only on row i of ``x``,
    e.g. linear layers, LayerNorm, activations; never BatchNorm) of a 2-D ``x`` (N, C), with
    the rows padded by zeros to :func:`row_bucket` where :func:`wants_buckets` and the pad
    rows cut off again. Other inputs: ``fn(x)`` unchanged."""
    n = x.shape[0]
    if x.dim() != 2 or not wants_buckets(x) or row_bucket(n) == n:
        return fn(x)
    padded = torch.cat([x, x.new_zeros(row_bucket(n) - n, x.shape[1])])  # (N_bucket, C)
    return fn(padded)[:n]  # (N, C_out)


class RowSequential(nn.Sequential):
    """``nn.Sequential`` of row-wise layers run on bucketed rows (:func:`bucket_rows`); the
    same parameters and state-dict keys as the plain ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        return bucket_rows(super().forward, x)


def linear_rates(max_rate: float, n: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``max_rate`` over ``n`` blocks.

    Plain Python (no tensor), so models can be built on the meta device.
    """
    return [max_rate * i / max(n - 1, 1) for i in range(n)]


class DropPath(nn.Module):
    """Stochastic depth (arXiv:1603.09382): zero whole rows of dim 0 with probability ``p``.

    For padded tokens (B, G, D) a row is one event; for packed points (N, D) it is one point.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        survive = x.new_empty(shape).bernoulli_(keep)
        return x * survive / keep

    def rows(self, x: Tensor, event: Tensor, num_events: int) -> Tensor:
        """Packed rows ``x`` (T, D) of ``num_events`` events (``event`` (T,) int64): drop whole
        events, drawing the same B numbers as :meth:`forward` on the padded (B, G, D) tokens."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        survive = x.new_empty((num_events,)).bernoulli_(keep)  # (B,)
        return x * (survive / keep)[event][:, None]


class LayerScale(nn.Module):
    """Per-channel learnable scale (CaiT, arXiv:2103.17239); identity when ``init`` is None."""

    def __init__(self, dim: int, init: float | None) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init))) if init is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return x if self.gamma is None else x * self.gamma


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (transformer feed-forward)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out if out is not None else dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return bucket_rows(self._rows, x)

    def _rows(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def key_mask(valid: Tensor | None) -> Tensor | None:
    """(B, S) bool keys that may be attended -> SDPA boolean mask (B, 1, 1, S), True = attend.

    Rows with no valid key at all (an empty event) get every key enabled so SDPA never returns
    NaN; their outputs are padding and must be ignored by the caller.
    """
    if valid is None:
        return None
    empty = ~valid.any(dim=1, keepdim=True)  # (B, 1)
    return (valid | empty)[:, None, None, :]  # (B, 1, 1, S)


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0, keys: int | Sequence[int] | None = None
) -> Tensor:
    """Softmax attention written out: q (B, H, Gq, Dh), k, v (B, H, G, Dh) -> (B, H, Gq, Dh);
    two batched products and a softmax (B H Gq G scores in memory). ``keys``: only the first
    ``keys`` of the G keys are attended to (the rest are padding), one int for every row of the
    batch or one per row (B ints); None = all.

    The softmax runs in the input's precision: PyTorch's kernel accumulates bf16 / fp16 in fp32
    and rounds once, so its output is an fp32 softmax rounded to the input precision (to one
    unit in the last place, tests/models/test_vit.py), without the fp32 copy of the scores and
    the casts back (on the CPU about 40 % of this function's forward + backward at 512 tokens,
    docs/benchmarks.md)."""
    G = k.shape[-2]
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, H, Gq, G)
    if keys is not None:
        per_row = [keys] * scores.shape[0] if isinstance(keys, int) else keys
        # The padded columns get -inf in place, outside autograd: no mask pass forward or
        # backward. Safe because the product's backward does not read its output and the
        # softmax's backward reads only its weights, which are 0 there (so the padded keys
        # get no gradient, tests/models/test_vit.py).
        with torch.no_grad():
            for b, n in enumerate(per_row):
                if n < G:
                    scores[b, ..., n:] = float("-inf")
    weights = torch.softmax(scores, dim=-1)  # (B, H, Gq, G)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v  # (B, H, Gq, Dh)


def packed_attention(
    q_rows: Tensor,
    kv_rows: Tensor,
    q_counts: list[int],
    counts: list[int],
    num_heads: int,
    dropout_p: float = 0.0,
) -> Tensor:
    """Unmasked softmax attention of each event's tokens among themselves, on packed rows:
    q_rows (Tq, D) holds ``q_counts[b]`` query rows of event b, back to back; kv_rows (T, 2D)
    its ``counts[b]`` key and value rows ([k | v] per row) -> (Tq, D).

    In bf16 / fp16 on the CPU (training under autocast): :func:`explicit_attention`, which runs
    forward + backward faster than PyTorch's CPU flash kernel at the sizes of a token ViT (G of
    100 to 500 tokens, heads of 32; docs/benchmarks.md), with the events of equal bucket sizes
    (:func:`row_bucket` of their query and key counts, padded keys masked, padded queries cut
    off) stacked into one batched call: oneDNN reuses its kernels, and the 16 events of the
    pretraining bench's batch make 10 calls a block instead of 16. With buckets off
    (:func:`set_row_buckets`) only events of equal counts share a call. Elsewhere (fp32; GPUs,
    where the fused kernels win) ``F.scaled_dot_product_attention`` event by event. The two
    agree to the rounding of the input precision (tests/models/test_vit.py).
    """
    D = q_rows.shape[1]
    H = num_heads
    if not (q_rows.device.type == "cpu" and q_rows.dtype in _REDUCED):
        outs = []
        for q_part, kv_part in zip(
            torch.split(q_rows, q_counts), torch.split(kv_rows, counts), strict=True
        ):  # (Gq_b, D), (G_b, 2D) per event
            if q_part.shape[0] == 0:
                continue
            q = q_part.reshape(1, -1, H, D // H).transpose(1, 2)  # (1, H, Gq_b, Dh)
            k, v = kv_part.reshape(1, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (1,H,G_b,Dh)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            outs.append(out[0].transpose(0, 1).reshape(-1, D))  # (Gq_b, D)
        return torch.cat(outs) if outs else q_rows.new_zeros(0, D)
    size = row_bucket if _BUCKETS[0] else int
    q_start = np.cumsum([0, *q_counts])  # (B + 1,)
    k_start = np.cumsum([0, *counts])
    groups: dict[tuple[int, int], list[int]] = {}
    for b, (gq, g) in enumerate(zip(q_counts, counts, strict=True)):
        if gq > 0:
            groups.setdefault((size(gq), size(g)), []).append(b)
    # index of every batch slot into the rows; one gather for all batches (its backward is one
    # index_add). A padded slot reads row 0: a padded key is masked (weight 0) and a padded
    # query's output is cut off, so neither adds to any result or gradient (both exactly 0)
    q_idx, k_idx, shapes = [], [], []
    source = np.empty(int(q_start[-1]), dtype=np.int64)  # row of the stacked outputs per query
    done = 0
    for (gq, g), events in groups.items():
        n = len(events)
        qi = np.zeros((n, gq), dtype=np.int64)
        ki = np.zeros((n, g), dtype=np.int64)
        for j, b in enumerate(events):
            qi[j, : q_counts[b]] = np.arange(q_start[b], q_start[b + 1])
            ki[j, : counts[b]] = np.arange(k_start[b], k_start[b + 1])
            source[q_start[b] : q_start[b + 1]] = done + j * gq + np.arange(q_counts[b])
        q_idx.append(qi.ravel())
        k_idx.append(ki.ravel())
        shapes.append((n, gq, g, [counts[b] for b in events]))
        done += n * gq
    if not shapes:
        return q_rows.new_zeros(0, D)
    q_all = q_rows.index_select(0, torch.from_numpy(np.concatenate(q_idx)))  # (sum n gq, D)
    kv_all = kv_rows.index_select(0, torch.from_numpy(np.concatenate(k_idx)))  # (sum n g, 2D)
    outs = []
    for (n, gq, g, keys), q_part, kv_part in zip(
        shapes,
        torch.split(q_all, [n * gq for n, gq, _, _ in shapes]),
        torch.split(kv_all, [n * g for n, _, g, _ in shapes]),
        strict=True,
    ):
        q = q_part.reshape(n, gq, H, D // H).transpose(1, 2).contiguous()  # (n, H, gq, Dh)
        kv = kv_part.reshape(n, g, 2, H, D // H).permute(2, 0, 3, 1, 4).contiguous()
        out = explicit_attention(q, kv[0], kv[1], dropout_p, keys=keys)
        outs.append(out.transpose(1, 2).reshape(n * gq, D))  # (n gq, D)
    return torch.cat(outs).index_select(0, torch.from_numpy(source))  # (Tq, D)


class Attention(nn.Module):
    """Multi-head self-attention with ``F.scaled_dot_product_attention`` and a key mask."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Attention: dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Args: x (B, G, D); valid (B, G) bool, True = token may be attended to.

        Returns (B, G, D). Padded query rows are computed but meaningless.
        """
        B, G, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).reshape(B, G, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, G, D/H)
        out = F.scaled_dot_product_attention(
            qkv[0],
            qkv[1],
            qkv[2],
            attn_mask=key_mask(valid),
            dropout_p=self.attn_drop if self.training else 0.0,
        )  # (B, H, G, D/H)
        out = out.transpose(1, 2).reshape(B, G, D)  # (B, G, D)
        return self.proj_drop(self.proj(out))

    def forward_rows(self, x: Tensor, counts: list[int], keep: Tensor | None = None) -> Tensor:
        """Packed tokens: x (T, D), the tokens of B events back to back (``counts[b]`` rows
        for event b). Attention is per event (:func:`packed_attention`; cost about
        sum_b G_b^2 instead of B * max_b G_b^2). Returns (T, D), equal to ``forward`` on the
        padded tokens at the real rows; with ``keep`` (T,) bool only the kept rows are
        queries, and the result is (T_kept, D) (every row is still a key and value).
        """
        D = x.shape[1]
        H = self.num_heads
        qkv = bucket_rows(self.qkv, x)  # (T, 3D)
        q_rows, kv_rows = qkv[:, :D], qkv[:, D:]  # (T, D), (T, 2D)
        q_counts = counts
        if keep is not None:
            q_rows = q_rows.index_select(0, torch.nonzero(keep)[:, 0])  # (T_kept, D)
            q_counts = [int(part.sum()) for part in torch.split(keep, counts)]
        drop = self.attn_drop if self.training else 0.0
        out = packed_attention(q_rows, kv_rows, q_counts, counts, H, drop)  # (T or T_kept, D)
        return self.proj_drop(bucket_rows(self.proj, out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries (B, Q, Dq) attend to keys/values (B, S, Dkv)."""

    def __init__(
        self, dim: int, kv_dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"CrossAttention: dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(kv_dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop

    def forward(
        self, query: Tensor, context: Tensor, context_valid: Tensor | None = None
    ) -> Tensor:
        """Args: query (B, Q, D); context (B, S, Dkv); context_valid (B, S) bool.

        Returns (B, Q, D).
        """
        B, Q, D = query.shape
        S = context.shape[1]
        H = self.num_heads
        q = self.q(query).reshape(B, Q, H, D // H).transpose(1, 2)  # (B, H, Q, D/H)
        kv = self.kv(context).reshape(B, S, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (2,B,H,S,D/H)
        out = F.scaled_dot_product_attention(
            q,
            kv[0],
            kv[1],
            attn_mask=key_mask(context_valid),
            dropout_p=self.attn_drop if self.training else 0.0,
        )  # (B, H, Q, D/H)
        return self.proj(out.transpose(1, 2).reshape(B, Q, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + DP(LS(Attn(LN(x)))), then x + DP(LS(MLP(LN(x))))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.ls1 = LayerScale(dim, layer_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.ls2 = LayerScale(dim, layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x (B, G, D), valid (B, G) -> (B, G, D)."""
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), valid)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def forward_rows(
        self, x: Tensor, counts: list[int], event: Tensor, keep: Tensor | None = None
    ) -> Tensor:
        """Packed tokens x (T, D) of B = len(counts) events, ``event`` (T,) the event of each
        row -> (T, D); equal to ``forward`` on the padded tokens at the real rows, with no
        work spent on padding. With ``keep`` (T,) bool only the kept rows are computed (all
        rows are still attended to): (T_kept, D), equal to those rows of the full result,
        drop-path draws included."""
        B = len(counts)
        attn = self.attn.forward_rows(self.norm1(x), counts, keep)  # (T or T_kept, D)
        if keep is not None:
            rows = torch.nonzero(keep)[:, 0]  # (T_kept,); index_select's backward is cheaper
            x, event = x.index_select(0, rows), event[rows]
        x = x + self.drop_path.rows(self.ls1(attn), event, B)
        return x + self.drop_path.rows(self.ls2(self.mlp(self.norm2(x))), event, B)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block: q + CA(LN(q), LN(ctx)), then q + MLP(LN(q))."""

    def __init__(
        self,
        dim: int,
        kv_dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(kv_dim)
        self.attn = CrossAttention(dim, kv_dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(
        self, query: Tensor, context: Tensor, context_valid: Tensor | None = None
    ) -> Tensor:
        """query (B, Q, D), context (B, S, Dkv), context_valid (B, S) -> (B, Q, D)."""
        q = query + self.drop_path(
            self.attn(self.norm_q(query), self.norm_kv(context), context_valid)
        )
        return q + self.drop_path(self.mlp(self.norm2(q)))
