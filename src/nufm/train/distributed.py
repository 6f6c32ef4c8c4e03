"""Data-parallel training through ``torchrun`` (DDP, Li et al. arXiv:2006.15704) and Slurm.

Owns: process-group setup from the torchrun environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; gloo on CPU, NCCL on GPU), small collective
helpers used by the loop, and :func:`write_slurm_script` / :func:`submit_slurm` for
``nufm submit``. Only rank 0 writes checkpoints and logs; every rank reads its own shard of
batches (``PointBudgetSampler(rank, world_size)``).
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    """Global rank (0 = writes checkpoints and logs)."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this node (selects the GPU)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group described by the torchrun environment, if any.

    Args:
        device_kind: 'cuda' (NCCL backend, one GPU per local rank) or 'cpu' (gloo).

    Returns:
        The rank layout; ``DistInfo()`` (single process) when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but {var} is not set: launch "
                "multi-process runs with torchrun"
            )
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ["LOCAL_RANK"]),
    )
    if dist.is_initialized():
        return info
    if device_kind == "cuda":
        torch.cuda.set_device(info.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    log.info(
        "DDP: rank %d / %d (local %d), backend %s",
        info.rank,
        info.world_size,
        info.local_rank,
        backend,
    )
    return info


def cleanup_distributed() -> None:
    """Leave the process group (no-op when not initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_max(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise max over ranks (identity for one process)."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise mean over ranks (identity for one process)."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` for one process).

    ``obj`` may hold tensors (e.g. RNG states): it travels as ``torch.save`` bytes, because
    ``all_gather_object`` cannot unpickle raw tensor storages in torch 2.13.
    """
    if not info.enabled:
        return [obj]
    buf = io.BytesIO()
    torch.save(obj, buf)
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, buf.getvalue())
    return [torch.load(io.BytesIO(b), weights_only=True) for b in out]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# ---------------------------------------------------------------- Slurm


def write_slurm_script(
    cfg: Any,
    *,
    nodes: int,
    gpus_per_node: int,
    time: str,
    partition: str | None,
    account: str | None,
    run_dir: str | Path,
    out_path: str | Path,
    cpus_per_task: int | None = None,
    rdzv_port: int = 29500,
    submit: bool = False,
) -> Path:
    """Write an sbatch script that runs ``nufm pretrain`` on ``nodes`` x ``gpus_per_node``.

    The run config is saved as ``run_dir/config.yaml`` and the job starts
    ``srun torchrun --nnodes $SLURM_NNODES --nproc_per_node G --rdzv_backend c10d
    --rdzv_endpoint $head:PORT -m nufm.cli pretrain --config-file run_dir/config.yaml
    --run-dir run_dir --resume``: one torchrun per node, rendezvous at the first node, and
    ``--resume`` so a requeued or resubmitted job continues from the latest complete checkpoint.
    Slurm sends SIGINT 120 s before the time limit (``--signal``); the loop then writes a
    checkpoint and exits.

    Args:
        cfg: The :class:`~nufm.config.RunConfig` to run.
        nodes: Number of nodes.
        gpus_per_node: GPUs (= processes) per node.
        time: Slurm time limit, e.g. '12:00:00'.
        partition: Slurm partition, or None for the site default.
        account: Slurm account, or None.
        run_dir: Run directory (checkpoints, logs, config.yaml, slurm-<jobid>.out).
        out_path: Where to write the script.
        cpus_per_task: CPUs per node task (all its ranks); default 8 per GPU.
        rdzv_port: Port of the c10d rendezvous on the head node.
        submit: Also submit it with ``sbatch`` (see :func:`submit_slurm`).

    Returns:
        Path of the written script.
    """
    from nufm.config import RunConfig, save_config

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"write_slurm_script: cfg must be a RunConfig, got {type(cfg).__name__}")
    if nodes <= 0 or gpus_per_node <= 0:
        raise ValueError(
            f"write_slurm_script: nodes ({nodes}) and gpus_per_node "
            f"({gpus_per_node}) must be positive"
        )
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    save_config(cfg, config_path)
    cpus = cpus_per_task if cpus_per_task is not None else 8 * gpus_per_node
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={q('nufm-' + cfg.name)}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={time}",
        f"#SBATCH --output={q(str(run_dir / 'slurm-%j.out'))}",
        "#SBATCH --signal=INT@120",
        "#SBATCH --requeue",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines += [
        "",
        "set -euo pipefail",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"export OMP_NUM_THREADS={max(1, cpus // gpus_per_node)}",
        'srun torchrun --nnodes "$SLURM_NNODES" '
        f"--nproc_per_node {gpus_per_node} "
        '--rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d '
        f'--rdzv_endpoint "$head:{rdzv_port}" '
        f"-m nufm.cli pretrain --config-file {q(str(config_path))} "
        f"--run-dir {q(str(run_dir))} --resume",
        "",
    ]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.chmod(0o755)
    log.info("wrote Slurm script %s", out)
    if submit:
        submit_slurm(out)
    return out


def submit_slurm(script: str | Path) -> str:
    """Submit ``script`` with ``sbatch``; return the job id.

    Raises:
        RuntimeError: ``sbatch`` is not on PATH, or it failed (its stderr is included).
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise RuntimeError(
            f"sbatch not found on PATH: run this on a Slurm login node, or "
            f"submit the written script yourself with `sbatch {script}`"
        )
    proc = subprocess.run(
        [sbatch, "--parsable", str(script)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {script} failed ({proc.returncode}): {proc.stderr.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    log.info("submitted %s as Slurm job %s", script, job_id)
    return job_id
