"""Metric sinks of a training run (rank 0 only): progress bar, JSONL, TensorBoard, W&B.

Owns ``run_dir/metrics.jsonl`` (one JSON object per logged step: ``{"step": s, name: value}``),
``run_dir/tensorboard/`` event files (``torch.utils.tensorboard.SummaryWriter``), an optional
Weights & Biases run (only when asked for; ``wandb`` is imported lazily) and a tqdm bar
showing step, loss, events/s and ETA. On resume, JSONL lines and TensorBoard points written
after the resumed step by the interrupted run are dropped, so each step appears once.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nufm.config import LoggingConfig

log = logging.getLogger(__name__)


def _truncate_jsonl(path: Path, keep_through_step: int) -> None:
    """Drop lines of ``path`` whose step is beyond ``keep_through_step`` (and broken lines)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= keep_through_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(f"{line}\n" for line in kept))


class RunLogger:
    """Writes metrics of one run. Create on rank 0 only.

    Args:
        run_dir: Run directory; ``metrics.jsonl`` and ``tensorboard/`` go there.
        cfg: Which sinks are on.
        max_steps: Total optimizer steps (progress bar length).
        start_step: First step this process runs (> 0 after resume).
        run_name: Name for W&B.
        config: The run config dict (stored in W&B).
    """

    def __init__(
        self,
        run_dir: str | Path,
        cfg: LoggingConfig,
        *,
        max_steps: int,
        start_step: int,
        run_name: str,
        config: dict[str, Any],
    ) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        _truncate_jsonl(self.jsonl_path, start_step)
        self._jsonl = open(self.jsonl_path, "a")  # noqa: SIM115 - closed in close()
        self._tb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                str(self.run_dir / "tensorboard"),
                purge_step=start_step + 1 if start_step > 0 else None,
            )
        self._wandb = None
        if cfg.wandb:
            try:
                import wandb  # type: ignore[import-not-found]
            except ImportError as e:
                raise RuntimeError(
                    "logging.wandb=True but the wandb package is not installed "
                    "(pip install wandb), or set --logging.no-wandb"
                ) from e
            self._wandb = wandb.init(
                project=cfg.wandb_project,
                name=run_name,
                config=config,
                dir=str(self.run_dir),
                resume="allow",
            )
        self._bar = tqdm(
            total=max_steps,
            initial=start_step,
            desc=run_name,
            disable=not cfg.progress,
            dynamic_ncols=True,
            leave=True,
        )

    def progress(self, step: int, loss: float, events_per_s: float) -> None:
        """Advance the bar to ``step`` and show the latest loss and throughput."""
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix(loss=f"{loss:.4g}", ev_s=f"{events_per_s:.1f}", refresh=False)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one JSONL line and one scalar per metric (TensorBoard tag ``train/<name>``)."""
        clean = {
            k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()
        }
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k if "/" in k else f"train/{k}", float(v), step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def close(self) -> None:
        self._bar.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
