"""Layer-wise learning-rate decay of the fine-tuned encoder (``encoder_layer_decay``):
each parameter's depth, hand-placed and in the order the blocks run, and the optimizer's
learning rates that follow from it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers.configs import tiny_ptv3, tiny_vit
from nufm.batch import PointBatch
from nufm.models.encoders import PTv3Config, build_encoder, layer_depth
from nufm.models.geometric import LocalGeometryConfig
from nufm.tasks import SemsegConfig, build_task
from nufm.train.optim import build_optimizer, set_step_hyperparams


def _three_stage_unet() -> PTv3Config:
    """PTv3 U-Net: encoder stages of 1 / 2 / 1 blocks, decoder stages of 1 / 2 blocks."""
    return dataclasses.replace(
        tiny_ptv3(),
        stride=(2, 2),
        enc_depths=(1, 2, 1),
        enc_channels=(8, 16, 16),
        enc_num_head=(1, 2, 2),
        enc_patch_size=(16, 16, 16),
        dec_depths=(1, 2),
        dec_channels=(8, 16),
        dec_num_head=(1, 2),
        dec_patch_size=(16, 16),
    )


def test_token_vit_depths_by_hand() -> None:
    cfg = tiny_vit()  # 2 blocks
    names = [n for n, _ in build_encoder(cfg).named_parameters()]
    got = {n: layer_depth(cfg, n) for n in names}
    assert {d for d, _ in got.values()} == {0, 1, 2} and {m for _, m in got.values()} == {2}
    for name, (depth, _) in got.items():
        if name.startswith("tokenizer."):
            assert depth == 0, name
        elif name.startswith("vit.blocks.0."):
            assert depth == 1, name
        elif name.startswith(("vit.blocks.1.", "vit.norm.")):
            assert depth == 2, name
        else:
            raise AssertionError(f"unexpected parameter {name}")


def test_ptv3_unet_depths_by_hand() -> None:
    cfg = _three_stage_unet()
    # encoder blocks 1 | 2 3 | 4, then the decoder's coarse stage 5 6, its fine stage 7;
    # a projection between blocks has the depth of the block before it
    expected_prefix = {
        "backbone.stem.": 0,
        "backbone.enc.0.0.": 1,
        "backbone.pools.0.": 1,
        "backbone.enc.1.0.": 2,
        "backbone.enc.1.1.": 3,
        "backbone.pools.1.": 3,
        "backbone.enc.2.0.": 4,
        "backbone.unpool_up.1.": 4,
        "backbone.unpool_skip.1.": 4,
        "backbone.dec.1.0.": 5,
        "backbone.dec.1.1.": 6,
        "backbone.unpool_up.0.": 6,
        "backbone.unpool_skip.0.": 6,
        "backbone.dec.0.0.": 7,
    }
    names = [n for n, _ in build_encoder(cfg).named_parameters()]
    placed = set()
    for name in names:
        prefix = next(p for p in expected_prefix if name.startswith(p))
        assert layer_depth(cfg, name) == (expected_prefix[prefix], 7), name
        placed.add(prefix)
    assert placed == set(expected_prefix)  # every part of the U-Net has parameters here
    enc_only = dataclasses.replace(cfg, enc_mode=True)
    assert layer_depth(enc_only, "backbone.enc.2.0.attn.qkv.weight") == (4, 4)
    assert layer_depth(enc_only, "backbone.pools.1.0.weight") == (3, 4)


@pytest.mark.parametrize("which", ["vit", "ptv3-unet"])
def test_depths_follow_the_order_the_blocks_run(which: str, task_batch: PointBatch) -> None:
    """Hooks on each block's MLP record the order in which the blocks run (the ViT's packed
    path calls its blocks' parts, not the blocks); their depths must rise along it."""
    cfg = tiny_vit() if which == "vit" else _three_stage_unet()
    encoder = build_encoder(cfg).eval()
    blocks = {
        name: module
        for name, module in encoder.named_modules()
        if (name.count(".") == 2 and name.startswith("vit.blocks."))
        or (name.count(".") == 3 and name.startswith(("backbone.enc.", "backbone.dec.")))
    }
    order: list[str] = []
    for name, module in blocks.items():
        module.get_submodule("mlp").register_forward_hook(
            lambda m, i, o, name=name: order.append(name)
        )
    with torch.no_grad():
        encoder(task_batch)
    assert sorted(order) == sorted(blocks)  # each block ran once
    depths = []
    for name in order:
        param_depths = {
            layer_depth(cfg, f"{name}.{p}")[0] for p, _ in blocks[name].named_parameters()
        }
        assert len(param_depths) == 1, name
        depths.append(param_depths.pop())
    assert depths == list(range(1, len(order) + 1))


@pytest.mark.parametrize("mode", ["full", "scratch"])
def test_optimizer_learning_rates_decay_by_depth(mode: str) -> None:
    torch.manual_seed(0)
    decay = 0.5
    cfg = SemsegConfig(
        encoder=tiny_vit(),
        mode=mode,  # type: ignore[arg-type]
        encoder_lr_scale=0.25,
        encoder_layer_decay=decay,
        neck_hidden=(16,),
        head_hidden=(16,),
    )
    weights = build_encoder(cfg.encoder).state_dict() if mode == "full" else None
    task = build_task(cfg, weights)
    opt = build_optimizer(task, lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    set_step_hyperparams(opt, lr=1e-3, weight_decay=0.05)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert lr_of.keys() == {n for n, p in task.named_parameters() if p.requires_grad}
    for name, lr in lr_of.items():
        if name.startswith("backbone.encoder.tokenizer."):
            expected = 1e-3 * 0.25 * decay**2
        elif name.startswith("backbone.encoder.vit.blocks.0."):
            expected = 1e-3 * 0.25 * decay
        elif name.startswith(("backbone.encoder.vit.blocks.1.", "backbone.encoder.vit.norm.")):
            expected = 1e-3 * 0.25
        else:
            assert not name.startswith("backbone.encoder."), name
            expected = 1e-3  # neck and head
        assert lr == pytest.approx(expected), name


def test_layer_decay_refuses_bad_values_and_encoders_without_blocks() -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"encoder_layer_decay must be in"):
            SemsegConfig(encoder=tiny_vit(), encoder_layer_decay=bad)
    with pytest.raises(ValueError, match=r"needs a token ViT or PTv3 encoder.*LocalGeometry"):
        SemsegConfig(encoder=LocalGeometryConfig(), encoder_layer_decay=0.9)
    SemsegConfig(encoder=LocalGeometryConfig())  # 1 = off: any encoder
    with pytest.raises(ValueError, match=r"no block order for a LocalGeometryConfig"):
        layer_depth(LocalGeometryConfig(), "anything")
    with pytest.raises(ValueError, match=r"'vit\.extra\.weight' has no depth"):
        layer_depth(tiny_vit(), "vit.extra.weight")
    with pytest.raises(ValueError, match=r"'backbone\.head\.weight' has no depth"):
        layer_depth(tiny_ptv3(), "backbone.head.weight")


def test_layer_decay_one_changes_nothing() -> None:
    """The default (1) gives every encoder parameter ``encoder_lr_scale``, as before the option."""
    task = build_task(SemsegConfig(encoder=tiny_ptv3(), mode="scratch", encoder_lr_scale=0.3))
    enc = [n for n, _ in task.named_parameters() if n.startswith("backbone.encoder.")]
    assert enc and all(task.param_lr_scale(n) == 0.3 for n in enc)
