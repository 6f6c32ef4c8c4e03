"""Each tiny preset "learns visibly": a few AdamW steps on the same small preprocessed synthetic
events bring the loss well below its start (fixed seed). The 40-step versions are slow; the
10-step versions run by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nufm.ssl.build import OBJECTIVE_PRESETS, build_objective
from nufm.train.step import StepOutput
from ssl_helpers import preprocessed_batch


def _train(name: str, steps: int, lr: float, n_events: int = 3, momentum: float = 0.996,
           seed: int = 0) -> tuple[list[float], list[StepOutput]]:
    torch.manual_seed(seed)
    model = build_objective(OBJECTIVE_PRESETS[name]).train()
    batch = preprocessed_batch(n_events, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    losses: list[float] = []
    outs: list[StepOutput] = []
    for step in range(steps):
        if hasattr(model, "set_schedule"):
            model.set_schedule(step / steps)
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        if hasattr(model, "update_teacher"):
            model.update_teacher(momentum)
        assert torch.isfinite(out.loss), f"{name}: non-finite loss at step {step}"
        losses.append(float(out.loss.detach()))
        outs.append(out)
    return losses, outs


@pytest.mark.parametrize("name", ["mae-tiny", "forecast-tiny"])
def test_reconstruction_presets_learn_fast(name: str) -> None:
    losses, _ = _train(name, steps=10, lr=1e-3)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mae-tiny", "forecast-tiny"])
def test_reconstruction_presets_learn(name: str) -> None:
    losses, _ = _train(name, steps=40, lr=1e-3)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
