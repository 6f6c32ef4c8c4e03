"""A released model of the field goes wherever a nufm model goes: `nufm embed`, `nufm finetune`
(its encoder in a nufm task) and `nufm evaluate`, from the file a person has (tiny random models
saved in the Sonata and PoLAr-MAE Lightning layouts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nufm.cli import main
from nufm.config import load_config
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.models.released.encoders import ReleasedPolarMAEConfig, ReleasedPTv3Config
from nufm.models.released.panda import PandaConfig, PTv3Released
from nufm.models.released.polarmae import PolarMAEConfig, PolarMAEEncoder
from nufm.workflows.embed import read_embeddings
from nufm.workflows.load import load_encoder

PTV3 = {
    "in_channels": 4,
    "order": ["hilbert", "hilbert-trans", "z", "z-trans"],
    "stride": [2, 2],
    "enc_depths": [1, 1, 1],
    "enc_channels": [16, 32, 48],
    "enc_num_head": [1, 2, 3],
    "enc_patch_size": [64, 64, 64],
    "enc_mode": True,
    "mask_token": True,
    "layer_scale": 1e-5,
}
POLARMAE = {"arch": "vit_tiny", "num_channels": 4, "transformer_kwargs": {"depth": 1}}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    ptv3 = PTv3Released(PandaConfig.from_reference(PTV3))
    torch.save({"config": PTV3, "state_dict": ptv3.state_dict()}, root / "sonata.pth")
    enc = PolarMAEEncoder(PolarMAEConfig.from_encoder_config(POLARMAE))
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"encoder": POLARMAE}}, root / "pm.ckpt")
    write_events(root / "events.h5", synthetic_events(12, seed=3))
    return {"ptv3": root / "sonata.pth", "polarmae": root / "pm.ckpt", "data": root / "events.h5"}


@pytest.mark.parametrize("kind", ["ptv3", "polarmae"])
def test_embed_a_released_model(files: dict[str, Path], tmp_path: Path, kind: str) -> None:
    out = tmp_path / "emb.h5"
    main(["embed", str(files[kind]), str(files["data"]), "--out", str(out)])
    emb = read_embeddings(out)
    width = load_encoder(files[kind]).encoder.out_dim
    assert emb.event.shape == (12, 2 * width)  # mean and max pooled
    assert np.isfinite(emb.event).all() and np.abs(emb.event).sum() > 0


@pytest.mark.parametrize(("kind", "mode"), [("ptv3", "full"), ("polarmae", "linear")])
def test_finetune_and_evaluate_a_released_encoder(
    files: dict[str, Path], tmp_path: Path, kind: str, mode: str
) -> None:
    run = tmp_path / "run"
    main(
        [
            "finetune",
            "--preset",
            f"semseg-{mode}",
            "--run-dir",
            str(run),
            "--finetune.pretrained",
            str(files[kind]),
            "--finetune.data",
            str(files["data"]),
            "--finetune.n-train",
            "4",
            "--train.max-steps",
            "2",
            "--optim.warmup-steps",
            "1",
            "--logging.no-progress",
        ]
    )
    saved = load_config(run / "config.yaml")
    expected = ReleasedPTv3Config if kind == "ptv3" else ReleasedPolarMAEConfig
    assert isinstance(saved.objective.encoder, expected)  # type: ignore[union-attr]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "semantic" in metrics["metrics"]
    out = tmp_path / "eval.json"
    main(["evaluate", str(run), "--data", str(files["data"]), "--out", str(out)])
    assert "semantic" in json.loads(out.read_text())["metrics"]


@pytest.mark.parametrize("variant", ["decoder", "linear-probe"])
def test_evaluate_a_released_segmentation_model(
    files: dict[str, Path], tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Panda-Semantic (decoder + seg_head) and its linear-probe variant (all encoder levels
    concatenated) in an export folder: `nufm evaluate` scores them, and the task nufm builds
    predicts what the segmentor does."""
    from safetensors.torch import save_file

    from nufm.batch import PointBatch
    from nufm.models.released.encoders import pimm_grid_coord
    from nufm.models.released.panda import PandaSegmentor, PandaSegmentorConfig
    from nufm.workflows.load import load_task

    backbone = dict(PTV3, mask_token=False, layer_scale=0.0)
    if variant == "decoder":
        backbone |= {
            "enc_mode": False,
            "dec_depths": [1, 1],
            "dec_channels": [16, 32],
            "dec_num_head": [1, 2],
            "dec_patch_size": [64, 64],
        }
    width = 16 if variant == "decoder" else sum(PTV3["enc_channels"])
    config = {"num_classes": 5, "backbone_out_channels": width, "backbone": backbone}
    torch.manual_seed(1)
    seg = PandaSegmentor(PandaSegmentorConfig.from_reference(config)).eval()
    folder = tmp_path / "panda-semantic"
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in seg.state_dict().items()}, str(folder / "model.safetensors")
    )
    (folder / "config.json").write_text(json.dumps(config))

    ft = load_task(folder)
    coord = torch.rand(500, 3) * 0.3
    batch = PointBatch(
        coord=coord, feat=torch.cat([coord, torch.rand(500, 1)], 1), offset=torch.tensor([300, 500])
    )
    torch.manual_seed(7)
    pred = ft.task.predict(batch)["pred"]
    torch.manual_seed(7)
    with torch.no_grad():
        ref = seg(
            batch.coord, batch.feat, pimm_grid_coord(batch.coord, batch.offset, 0.001), batch.offset
        )
    assert torch.equal(pred, ref.argmax(-1))

    monkeypatch.chdir(tmp_path)
    main(["evaluate", str(folder), "--data", str(files["data"])])
    metrics = json.loads((tmp_path / "eval_test.json").read_text())
    assert metrics["metrics"]["semantic"]["confusion_matrix"]
    assert not (folder / "eval_test.json").exists()


def test_evaluate_a_released_polarmae_semantic_checkpoint(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PoLAr-MAE-Semantic Lightning checkpoint: `nufm evaluate` scores it on 4 classes with
    its own preprocessing, and `nufm embed` uses its encoder."""
    from nufm.batch import PointBatch
    from nufm.models.released.polarmae_semantic import PolarMAESegmentor, PolarMAESegmentorConfig
    from nufm.workflows.load import load_task

    encoder = {"arch": "vit_tiny", "num_channels": 4, "transformer_kwargs": {"depth": 2}}
    head = {
        "num_classes": 4,
        "seg_head_fetch_layers": [0, 1],
        "seg_head_dim": 64,
        "condition_global_features": True,
        "seg_decoder": None,
    }
    torch.manual_seed(2)
    cfg = PolarMAESegmentorConfig.from_hyper_parameters(
        head, PolarMAEConfig.from_encoder_config(encoder)
    )
    model = PolarMAESegmentor(cfg).eval()
    ckpt = tmp_path / "semantic.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": {"encoder": encoder, **head}}, ckpt
    )

    ft = load_task(ckpt)
    assert ft.preprocess.remove_low_energy and ft.config.num_classes == 4
    coord = torch.rand(400, 3) * 0.1
    feat = torch.cat([coord, torch.rand(400, 1)], 1)
    batch = PointBatch(coord=coord, feat=feat, offset=torch.tensor([250, 400]))
    pred = ft.task.predict(batch)["pred"]
    points = torch.zeros(2, 250, 4)
    points[0], points[1, :150] = feat[:250], feat[250:]
    with torch.no_grad():
        ref = model(points, torch.tensor([250, 150]))
    assert torch.equal(pred, torch.cat([ref[0].argmax(-1), ref[1, :150].argmax(-1)]))

    monkeypatch.chdir(tmp_path)
    main(["evaluate", str(ckpt), "--data", str(files["data"])])
    semantic = json.loads((tmp_path / "eval_test.json").read_text())["metrics"]["semantic"]
    assert len(semantic["confusion_matrix"]) == 4
    main(["embed", str(ckpt), str(files["data"]), "--out", str(tmp_path / "e.h5")])
    assert read_embeddings(tmp_path / "e.h5").event.shape == (12, 2 * 192)
