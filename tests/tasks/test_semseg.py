import math

import pytest

from nufm.tasks.semseg import PILARNET_SEGMENT_COUNTS, SemsegConfig


def test_class_weightings_follow_pilarnet_counts() -> None:
    total = sum(PILARNET_SEGMENT_COUNTS)
    full = SemsegConfig(class_weighting="pilarnet").weights
    sqrt = SemsegConfig(class_weighting="pilarnet-sqrt").weights
    for c, count in enumerate(PILARNET_SEGMENT_COUNTS):
        assert full[c] == pytest.approx(total / count)
        assert sqrt[c] == pytest.approx(math.sqrt(total / count))
    assert SemsegConfig(class_weighting="none").weights == (1.0,) * 5
    # Michel is the rarest class: 0.65% of points (PILArNet-M v1, docs/references.md)
    assert max(range(5), key=lambda c: sqrt[c]) == 2
