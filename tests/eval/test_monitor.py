"""The pretraining monitor: a per-point linear probe on frozen encoder features."""

from __future__ import annotations

import torch
from torch import nn

from nufm.eval.monitor import probe_monitor
from nufm.eval.probes import LinearProbeConfig
from nufm.models.encoders import EncoderOutput


class _LabelLeak(nn.Module):
    """An 'encoder' whose per-point features are the one-hot semantic class (a perfect probe)
    or pure noise: the probe must score near 1 on the first and near chance on the second."""

    def __init__(self, informative: bool) -> None:
        super().__init__()
        self.informative = informative
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        seg = batch.segment.clamp(min=0)
        if self.informative:
            feat = torch.nn.functional.one_hot(seg, 5).float()
        else:
            feat = torch.randn(batch.num_points, 5, generator=torch.Generator().manual_seed(0))
        return EncoderOutput(feat=feat, level="point", offset=batch.offset)


class _Objective(nn.Module):
    def __init__(self, informative: bool) -> None:
        super().__init__()
        self.encoder = _LabelLeak(informative)


def test_probe_monitor_separates_informative_from_random_features() -> None:
    monitor = probe_monitor(n_events=12, probe=LinearProbeConfig(epochs=5), n_splits=2)
    good = monitor(_Objective(True), 0)
    bad = monitor(_Objective(False), 0)
    # rare classes may be missing from the 6 probe-train events, so macro F1 stays below 1
    assert good["probe_accuracy"] > 0.98 and good["probe_macro_f1"] > 0.75
    assert bad["probe_macro_f1"] < 0.5 and bad["probe_accuracy"] < good["probe_accuracy"] - 0.3
    assert set(good) == {"probe_macro_f1", "probe_macro_f1_std", "probe_miou", "probe_accuracy"}
