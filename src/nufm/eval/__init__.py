"""nufm.eval: dataset-level metrics, event splits, probes, retrieval and evaluation plots.

- ``metrics.py``: :class:`ConfusionMatrix` (per-class P/R/F1/IoU, macro F1, mIoU), ARI,
  panoptic quality, regression residuals. Always dataset level, never averaged per batch.
- ``bootstrap.py``: per-event confusion matrices and the test-event bootstrap of macro F1.
- ``report.py``: :func:`metrics_report`, :func:`write_metrics_json` (versioned, atomic).
- ``splits.py``: event-level splits and the event-leak check.
- ``probes.py``: bag of linear heads and kNN probes on frozen features.
- ``token_probe.py``: PoLAr-MAE-style token multi-label SVM probe (a separate, named metric).
- ``retrieval.py``: :class:`EmbeddingIndex`, kNN anomaly scores, ROC AUC.
- ``tasks.py``: :func:`evaluate_task`, dataset-level scores of a fine-tuned task.
- ``projection.py``: 2D t-SNE / PCA maps. ``plots.py``: figures (pure functions).

See ``docs/evaluation.md`` for the definitions and the protocol.
"""

from nufm.data.event_split import split_events
from nufm.eval.metrics import (
    ConfusionMatrix,
    InstanceMetrics,
    PanopticCounts,
    RegressionMetrics,
    SemanticMetrics,
    adjusted_rand_index,
    metrics_from_counts,
    panoptic_counts,
    regression_metrics,
)
from nufm.eval.probes import (
    EventSplit,
    KNNProbeConfig,
    LinearProbeConfig,
    ProbeResult,
    run_probe,
)
from nufm.eval.projection import embed_2d
from nufm.eval.report import SCHEMA_VERSION, metrics_report, read_metrics_json, write_metrics_json
from nufm.eval.retrieval import EmbeddingIndex, knn_anomaly_score, roc_auc
from nufm.eval.splits import (
    EventLeakError,
    assert_disjoint_events,
    points_in_events,
    split_event_ids,
)
from nufm.eval.tasks import evaluate_task, iter_batches, iter_predictions
from nufm.eval.token_probe import (
    TokenProbeResult,
    TokenSVMProbeConfig,
    run_token_svm_probe,
    token_multi_hot,
)

__all__ = [
    "SCHEMA_VERSION",
    "ConfusionMatrix",
    "EmbeddingIndex",
    "EventLeakError",
    "EventSplit",
    "InstanceMetrics",
    "KNNProbeConfig",
    "LinearProbeConfig",
    "PanopticCounts",
    "ProbeResult",
    "RegressionMetrics",
    "SemanticMetrics",
    "TokenProbeResult",
    "TokenSVMProbeConfig",
    "adjusted_rand_index",
    "assert_disjoint_events",
    "embed_2d",
    "evaluate_task",
    "iter_batches",
    "iter_predictions",
    "knn_anomaly_score",
    "metrics_from_counts",
    "metrics_report",
    "panoptic_counts",
    "points_in_events",
    "read_metrics_json",
    "regression_metrics",
    "roc_auc",
    "run_probe",
    "run_token_svm_probe",
    "split_event_ids",
    "split_events",
    "token_multi_hot",
    "write_metrics_json",
]
