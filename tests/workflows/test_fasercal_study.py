"""The FASERCal study end to end at smoke size: simulation, both pretraining phases, the
fine-tuning of every initialisation, the tables and the plot, and reuse of finished runs."""

import csv
import re

from nufm.cli import main
from nufm.workflows.fasercal_study import FASER_STUDY_PRESETS, results_markdown


def test_smoke_study_writes_every_row_and_reuses_pretraining(tmp_path, capsys):
    out = tmp_path / "study"
    main(["fasercal-study", "--preset", "smoke", "--out", str(out)])
    printed = capsys.readouterr().out
    cfg = FASER_STUDY_PRESETS["smoke"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(cfg.sizes) * len(cfg.inits) * len(cfg.seeds)
    assert {r["init"] for r in rows} == {"scratch", "mae", "mae-rel"}
    for r in rows:
        assert 0.0 <= float(r["flavour_macro_auc"]) <= 1.0
        assert float(r["vertex_mm_median"]) > 0
    assert "MAE + relational pretrained" in printed
    assert (out / "label_efficiency.png").stat().st_size > 10_000
    # phase 2 started from phase 1 (its config records it), and a rerun reuses both
    assert "init_from" in (out / "pretrain-mae-rel" / "config.yaml").read_text()
    before = (out / "pretrain-mae" / "checkpoints").stat().st_mtime_ns
    main(["fasercal-study", "--preset", "smoke", "--out", str(out), "--seeds", "1"])
    assert (out / "pretrain-mae" / "checkpoints").stat().st_mtime_ns == before
    # the rerun kept seed 0's rows beside seed 1's
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted({r["seed"] for r in rows}) == ["0", "1"]
    assert len(rows) == 2 * len(cfg.sizes) * len(cfg.inits)
    assert "+-" in (out / "results.md").read_text()  # means over two seeds with spread
    table = results_markdown([dict(r, n_train=int(r["n_train"])) for r in rows], cfg, "header")
    assert len(re.findall(r"\| from scratch \| \d+ \|", table)) == len(cfg.sizes)
