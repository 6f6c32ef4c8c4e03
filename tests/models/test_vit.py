"""ViT, attention blocks and Perceiver-IO: shapes, gradients, masking, batch independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nufm.models.layers import (
    Attention,
    DropPath,
    explicit_attention,
    packed_attention,
    set_row_buckets,
)
from nufm.models.perceiver import PerceiverConfig, PerceiverIO
from nufm.models.vit import ViT, ViTConfig


def _tiny_vit(**kw: object) -> ViT:
    base: dict[str, object] = dict(drop_path=0.1, attn_drop=0.0)
    cfg = ViTConfig(embed_dim=32, depth=2, num_heads=4, **(base | kw))  # type: ignore[arg-type]
    return ViT(cfg)


def test_attention_matches_manual_softmax() -> None:
    torch.manual_seed(0)
    att = Attention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = att(x, valid)
    B, G, D = x.shape
    qkv = att.qkv(x).reshape(B, G, 3, 2, 8).permute(2, 0, 3, 1, 4)
    logits = qkv[0] @ qkv[1].transpose(-1, -2) / 8**0.5  # (B, H, G, G)
    logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
    ref = (logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(B, G, D)
    torch.testing.assert_close(out, att.proj(ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_explicit_attention_equals_sdpa(dtype: torch.dtype) -> None:
    """The explicit form of one event's attention: output and gradients equal to PyTorch's
    fused kernel within the rounding of the input precision (G = 150 tokens, 3 heads of 32)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 3, 150, 32, dtype=dtype, requires_grad=True) for _ in range(3))
    got = explicit_attention(q, k, v)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(got, want, **tol)
    w = torch.randn_like(got)
    g_got = torch.autograd.grad((got * w).sum(), (q, k, v))
    g_want = torch.autograd.grad((want * w).sum(), (q, k, v))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.float(), b.float(), **tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_softmax_equals_rounded_fp32_softmax(dtype: torch.dtype) -> None:
    """The softmax of explicit_attention runs in bf16 / fp16: PyTorch's kernel accumulates in
    fp32, so the weights are an fp32 softmax rounded once to the input dtype: at most one unit
    in the last place apart (measured: bit-equal but for a few entries of a row whose length
    is not a multiple of the vector width)."""
    torch.manual_seed(0)
    for length in (200, 512):
        scores = (torch.randn(2, 3, 100, length) * 4).to(dtype)
        got = torch.softmax(scores, dim=-1).float()
        want = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype).float()
        info = torch.finfo(dtype)
        # one unit in the last place per entry (a fixed step among the subnormals)
        ulp = info.eps * want.abs().clamp_min(info.smallest_normal)
        assert torch.all((got - want).abs() <= ulp)
        assert (got == want).float().mean() > 0.999


def _packed_events(
    counts: list[int], q_counts: list[int], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    q_rows = torch.randn(sum(q_counts), 64, generator=gen).to(dtype).requires_grad_()
    kv_rows = torch.randn(sum(counts), 128, generator=gen).to(dtype).requires_grad_()
    return q_rows, kv_rows


def _per_event_reference(
    q_rows: torch.Tensor, kv_rows: torch.Tensor, q_counts: list[int], counts: list[int]
) -> torch.Tensor:
    """Event by event in fp64 with PyTorch's SDPA (2 heads of 32)."""
    outs = []
    for qp, kvp in zip(
        torch.split(q_rows.double(), q_counts), torch.split(kv_rows.double(), counts), strict=True
    ):
        q = qp.reshape(1, -1, 2, 32).transpose(1, 2)
        k, v = kvp.reshape(1, -1, 2, 2, 32).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        outs.append(out[0].transpose(0, 1).reshape(-1, 64))
    return torch.cat(outs)


@pytest.mark.parametrize("buckets", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_attention_equals_per_event_sdpa(dtype: torch.dtype, buckets: bool) -> None:
    """Packed events (two sharing a bucket, two of equal size, one with no query, one query
    subset): every query row equals the fp64 per-event reference to the input's rounding, and
    so do the gradients of the query and key/value rows (padded slots get none)."""
    counts = [70, 67, 12, 12, 30, 150]
    q_counts = [70, 67, 12, 12, 0, 41]  # the last event: 41 of its 150 rows are queries
    q_rows, kv_rows = _packed_events(counts, q_counts, dtype)
    previous = set_row_buckets(buckets)
    try:
        got = packed_attention(q_rows, kv_rows, q_counts, counts, num_heads=2)
    finally:
        set_row_buckets(previous)
    want = _per_event_reference(q_rows, kv_rows, q_counts, counts)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    assert got.shape == (sum(q_counts), 64) and got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **tol)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_got = torch.autograd.grad((got.double() * w).sum(), (q_rows, kv_rows))
    ref_inputs = [t.detach().double().requires_grad_() for t in (q_rows, kv_rows)]
    ref = _per_event_reference(*ref_inputs, q_counts, counts)
    g_want = torch.autograd.grad((ref * w).sum(), ref_inputs)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol)


def test_explicit_attention_masks_padded_keys() -> None:
    """Keys past ``keys`` get no weight: padding the keys and values with garbage rows and
    masking them gives the attention of the unpadded event (fp32, to rounding), gradients
    included, and the padded keys get no gradient."""
    torch.manual_seed(0)
    q = torch.randn(1, 2, 7, 8, requires_grad=True)
    k, v = (torch.randn(1, 2, 11, 8, requires_grad=True) for _ in range(2))
    got = explicit_attention(q, k, v, keys=9)  # (1, 2, 7, 8)
    want = torch.nn.functional.scaled_dot_product_attention(q, k[:, :, :9], v[:, :, :9])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    got.square().sum().backward()
    assert k.grad is not None and v.grad is not None
    assert torch.all(k.grad[:, :, 9:] == 0) and torch.all(v.grad[:, :, 9:] == 0)
    assert k.grad[:, :, :9].abs().sum() > 0


def test_vit_shapes_hidden_and_gradients() -> None:
    torch.manual_seed(0)
    vit = _tiny_vit(add_pos_at_every_layer=True, layer_scale=0.1).train()
    x = torch.randn(3, 7, 32)
    pos = torch.randn(3, 7, 32)
    valid = torch.rand(3, 7) > 0.3
    valid[:, 0] = True
    out = vit(x, pos, valid, return_blocks=(0, -1))
    assert out.feat.shape == (3, 7, 32)
    assert set(out.hidden) == {0, 1}
    out.feat[valid].square().mean().backward()
    for name, p in vit.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_vit_padding_and_batch_independence() -> None:
    torch.manual_seed(0)
    vit = _tiny_vit().eval()
    x = torch.randn(3, 9, 32)
    pos = torch.randn(3, 9, 32)
    valid = torch.ones(3, 9, dtype=torch.bool)
    valid[0, 4:] = False
    full = vit(x, pos, valid).feat
    # Event 0 alone with its padding cut away.
    alone = vit(x[:1, :4], pos[:1, :4], None).feat
    torch.testing.assert_close(full[0, :4], alone[0], atol=1e-5, rtol=1e-5)
    # Garbage in padded slots does not change valid outputs.
    x2 = x.clone()
    x2[0, 4:] = 1e3
    torch.testing.assert_close(vit(x2, pos, valid).feat[valid], full[valid], atol=1e-5, rtol=1e-5)


def test_vit_empty_event_gives_no_nan() -> None:
    vit = _tiny_vit().eval()
    valid = torch.zeros(2, 4, dtype=torch.bool)
    valid[1] = True
    out = vit(torch.randn(2, 4, 32), None, valid).feat
    assert torch.isfinite(out).all()


def test_drop_path_statistics() -> None:
    torch.manual_seed(0)
    dp = DropPath(0.25).train()
    y = dp(torch.ones(20000, 2))
    dropped = (y[:, 0] == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.02
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert torch.equal(dp.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def _two_streams() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(1)
    a = torch.randn(2, 6, 24)
    b = torch.randn(2, 4, 16)
    va = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    vb = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    return [a, b], [va, vb]


def test_perceiver_shapes_masking_and_gradients() -> None:
    cfg = PerceiverConfig(
        stream_dims=(24, 16), num_latents=8, latent_dim=32, num_heads=4, depth=2, num_cross=2
    )
    model = PerceiverIO(cfg).eval()
    streams, valids = _two_streams()
    z = model(streams, valids)
    assert z.shape == (2, 8, 32)
    queries = torch.randn(2, 5, 32)
    out = model.decode(queries, z)
    assert out.shape == (2, 5, 32)
    # Perturb padded entries (including non-finite junk): outputs unchanged.
    junk = [s.clone() for s in streams]
    junk[0][~valids[0]] = float("nan")
    junk[1][~valids[1]] = 1e6
    z2 = model(junk, valids)
    torch.testing.assert_close(z2, z, atol=1e-6, rtol=1e-6)
    # Dropping the padding of event 0 entirely gives the same latents (batch independence).
    alone = model([streams[0][:1, :4], streams[1][:1, :2]], [valids[0][:1, :4], valids[1][:1, :2]])
    torch.testing.assert_close(alone[0], z[0], atol=1e-5, rtol=1e-5)
    # A real token does matter.
    moved = [s.clone() for s in streams]
    moved[1][0, 0] += 1.0
    assert not torch.allclose(model(moved, valids)[0], z[0])
    model.train()
    model.decode(queries, model(streams, valids)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_perceiver_rejects_wrong_stream_width() -> None:
    model = PerceiverIO(
        PerceiverConfig(stream_dims=(24, 16), num_latents=4, latent_dim=16, num_heads=2, depth=1)
    )
    streams, valids = _two_streams()
    with pytest.raises(ValueError, match="stream 1 has width 24"):
        model([streams[0], streams[0]], valids)


def test_vit_config_validation() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        ViTConfig(embed_dim=30, num_heads=4)


@pytest.mark.parametrize("train", [False, True])
def test_vit_packed_rows_equal_padded_blocks(train: bool) -> None:
    """ViT runs only real tokens (packed projections, attention per event); at the real rows
    it must equal the padded, masked blocks, drop-path included (same per-event draws)."""
    torch.manual_seed(0)
    vit = _tiny_vit(drop_path=0.5, attn_drop=0.0, add_pos_at_every_layer=True).train(train)
    B, G, D = 3, 7, vit.cfg.embed_dim
    x, pos = torch.randn(B, G, D), torch.randn(B, G, D)
    valid = torch.rand(B, G) < 0.7
    valid[0, 0] = valid[1, 3] = True
    valid[2] = False  # an event with no token
    torch.manual_seed(1)
    out = vit(x, pos, valid, return_blocks=(0,))
    torch.manual_seed(1)
    h = x
    for i, block in enumerate(vit.blocks):
        h = block(h + pos, valid)
        if i == 0:
            torch.testing.assert_close(out.hidden[0][valid], h[valid])
    torch.testing.assert_close(out.feat[valid], vit.norm(h)[valid])
    assert bool((out.feat[~valid] == 0).all())


@pytest.mark.parametrize("train", [False, True])
def test_vit_read_rows_equal_the_full_output(train: bool) -> None:
    """With ``read`` the last block computes only the read tokens: those rows equal the full
    forward (drop-path draws included), the others are 0; gradients to the input match."""
    torch.manual_seed(0)
    vit = _tiny_vit(drop_path=0.5, attn_drop=0.0, add_pos_at_every_layer=True).train(train)
    B, G, D = 3, 9, vit.cfg.embed_dim
    x = torch.randn(B, G, D, requires_grad=True)
    pos = torch.randn(B, G, D)
    valid = torch.rand(B, G) < 0.8
    valid[2] = False  # an event with no token
    read = torch.rand(B, G) < 0.5
    read[1] = False  # an event none of whose tokens is read
    torch.manual_seed(1)
    full = vit(x, pos, valid, return_blocks=(0,))
    torch.manual_seed(1)
    part = vit(x, pos, valid, return_blocks=(0,), read=read)
    rows = valid & read
    torch.testing.assert_close(part.feat[rows], full.feat[rows], atol=1e-6, rtol=1e-5)
    assert bool((part.feat[~rows] == 0).all())
    torch.testing.assert_close(part.hidden[0], full.hidden[0])
    w = torch.randn(B, G, D) * rows[..., None]
    (g_part,) = torch.autograd.grad((part.feat * w).sum(), x)
    (g_full,) = torch.autograd.grad((full.feat * w).sum(), x)
    torch.testing.assert_close(g_part, g_full, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="last block"):
        vit(x, pos, valid, return_blocks=(-1,), read=read)
