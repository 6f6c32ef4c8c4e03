from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers.configs import tiny_run_config
from nufm.config import load_config
from nufm.train.checkpoint import latest_checkpoint, load_checkpoint
from nufm.train.distributed import submit_slurm, write_slurm_script

_DDP_SCRIPT = """
import hashlib, json, os, sys
sys.path.insert(0, {helpers!r})
import torch
from helpers.configs import tiny_run_config, toy_factory
from nufm.train.loop import seed_everything, train
from nufm.ssl.toy import ToyObjective

class Recording(ToyObjective):
    seen = []
    def forward(self, batch):
        Recording.seen += batch.event_id.tolist()
        return super().forward(batch)

out = sys.argv[1]
cfg = tiny_run_config(train={{"max_steps": 4, "checkpoint_every": 2}}, data={{"num_events": 64}})
seed_everything(cfg.train.seed)
obj = Recording(cfg.objective)
if int(os.environ["RANK"]) == 1:  # different init on rank 1: DDP must broadcast rank 0's
    with torch.no_grad():
        for p in obj.parameters():
            p.add_(1.0)
train(cfg, obj, toy_factory, out + "/run")
h = hashlib.sha256()
for k, v in obj.state_dict().items():
    h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
rank = os.environ["RANK"]
with open(f"{{out}}/rank{{rank}}.json", "w") as f:
    json.dump({{"hash": h.hexdigest(), "seen": Recording.seen,
               "world": torch.distributed.get_world_size()}}, f)
torch.distributed.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_ranks_stay_identical(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT.format(helpers=str(Path(__file__).parents[1]))))
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *launcher,
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["hash"] == r1["hash"]
    # ranks read disjoint shards of the same epoch
    assert r0["seen"] and r1["seen"] and not set(r0["seen"]) & set(r1["seen"])
    # only rank 0 wrote: one set of checkpoints, holding both ranks' RNG states
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["step"] == 4 and len(state["rng"]) == 2
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp*"))


def test_slurm_script_content(tmp_path: Path) -> None:
    cfg = tiny_run_config(root={"name": "big run"})
    run_dir = tmp_path / "run dir"
    path = write_slurm_script(
        cfg,
        nodes=2,
        gpus_per_node=4,
        time="12:00:00",
        partition="gpu",
        account="lartpc",
        run_dir=run_dir,
        out_path=tmp_path / "job.sh",
    )
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    for line in [
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=12:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lartpc",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --job-name='nufm-big run'",
    ]:
        assert line in text.splitlines(), line
    cmd = next(x for x in text.splitlines() if x.startswith("srun "))
    assert cmd.startswith('srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 4 ')
    assert '--rdzv_backend c10d --rdzv_endpoint "$head:29500"' in cmd
    config_path = (run_dir / "config.yaml").resolve()
    assert f"-m nufm.cli pretrain --config-file '{config_path}'" in cmd
    assert cmd.endswith(f"--run-dir '{run_dir.resolve()}' --resume")
    assert load_config(config_path) == cfg
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    nopart = write_slurm_script(
        cfg,
        nodes=1,
        gpus_per_node=1,
        time="1:00:00",
        partition=None,
        account=None,
        run_dir=run_dir,
        out_path=tmp_path / "j2.sh",
    )
    assert "--partition" not in nopart.read_text() and "--account" not in nopart.read_text()


def test_submit_without_sbatch_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("sbatch") is None
    with pytest.raises(RuntimeError, match="sbatch not found on PATH"):
        submit_slurm(tmp_path / "job.sh")


def test_submit_cli_writes_script_with_overrides(tmp_path: Path) -> None:
    from nufm.train.run import submit_cli

    path = submit_cli(
        [
            "--preset",
            "toy",
            "--run-dir",
            str(tmp_path / "r"),
            "--nodes",
            "3",
            "--gpus-per-node",
            "2",
            "--train.max-steps",
            "11",
        ]
    )
    assert path == tmp_path / "r" / "submit.sbatch"
    assert "#SBATCH --nodes=3" in path.read_text()
    assert load_config(tmp_path / "r" / "config.yaml").train.max_steps == 11
