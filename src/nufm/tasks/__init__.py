"""nufm.tasks: downstream fine-tuning tasks (encoder + head + loss).

- ``backbone.py``: modes (linear | head | full | scratch), the task config base, the encoder +
  neck backbone (parameter-free per-point features in linear mode), the task base class.
- ``heads.py``: the MLP head and per-segment mean/max pooling.
- ``encoder_state.py``: loading pretrained encoder weights into a task's encoder.
- ``semseg.py``: per-point semantic segmentation (CE or focal loss).
- ``pid.py``: particle identification per true instance.
- ``cluster.py``: particle / interaction clustering with a discriminative embedding loss.
- ``event_task.py``: event-level classification and regression from pooled features.
- ``build.py``: :data:`TaskConfig`, :func:`build_task` (named tasks: :mod:`nufm.presets`).

Their dataset-level evaluation is :mod:`nufm.eval.tasks`; loading a fine-tuned task from a run
or an export is :mod:`nufm.workflows.load`.

See ``docs/tasks.md``.
"""

from nufm.models.base import PointFeatures  # re-exported: tasks use it for the linear mode
from nufm.tasks.backbone import MODES, Mode, TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.build import TaskConfig, build_task, count_parameters
from nufm.tasks.cluster import ClusterConfig, InstanceClustering, discriminative_loss
from nufm.tasks.encoder_state import extract_encoder_state, load_encoder_state
from nufm.tasks.event_task import AddEventTargets, EventTask, EventTaskConfig
from nufm.tasks.multitask import MultiTask, MultiTaskConfig
from nufm.tasks.pid import ParticleID, PIDConfig
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig, focal_loss

__all__ = [
    "MODES",
    "AddEventTargets",
    "ClusterConfig",
    "EventTask",
    "EventTaskConfig",
    "InstanceClustering",
    "Mode",
    "MultiTask",
    "MultiTaskConfig",
    "PIDConfig",
    "ParticleID",
    "PointFeatures",
    "SemanticSegmentation",
    "SemsegConfig",
    "TaskBackbone",
    "TaskBaseConfig",
    "TaskConfig",
    "TaskModule",
    "build_task",
    "count_parameters",
    "discriminative_loss",
    "extract_encoder_state",
    "focal_loss",
    "load_encoder_state",
]
