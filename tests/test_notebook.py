"""The notebook: committed clean, and it runs end to end with tiny parameters."""

import json
from pathlib import Path

import problem_unittests
from benchmarks import report as report_benchmark
from facegan.history import read_history
from facegan.report import NOTEBOOK, make_report

PARAMETERS = (
    "DATA",
    "IMAGE_SIZE",
    "EPOCHS",
    "BATCH_SIZE",
    "Z_SIZE",
    "CONV_DIM",
    "N_IMAGES",
    "DEVICE",
    "SEED",
    "LOSS",
    "D_NORM",
    "SMOOTH",
    "EMA",
    "FLIP",
    "EVAL_EVERY",
    "EVAL_N",
    "OUT",
)
TINY = {
    "IMAGE_SIZE": "32",  # shares the 32 px coverage classifier the other tests train
    "EPOCHS": "2",
    "BATCH_SIZE": "32",
    "Z_SIZE": "16",
    "CONV_DIM": "8",
    "N_IMAGES": "256",
    "EVAL_EVERY": "1",
    "EVAL_N": "64",
}


def code_cells() -> list[dict]:
    return [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def test_the_notebook_is_committed_without_outputs():
    for cell in code_cells():
        assert cell["outputs"] == [] and cell["execution_count"] is None


def test_the_first_code_cell_is_the_papermill_parameters_cell():
    first = code_cells()[0]
    assert "parameters" in first["metadata"]["tags"]
    names = {
        line.split("=")[0].strip()
        for line in "".join(first["source"]).splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert set(PARAMETERS) <= names


def test_every_problem_unittest_is_called_by_the_notebook():
    source = "".join("".join(c["source"]) for c in code_cells())
    for check in problem_unittests.CHECKS:
        assert f"tests.{check}(" in source


def test_the_notebook_runs_end_to_end_and_exports_html(tmp_path):
    run_dir = tmp_path / "run"
    report = make_report(TINY | {"OUT": str(run_dir)}, tmp_path / "reports")
    assert report == tmp_path / "reports" / "dlnd_face_generation.html"
    html = report.read_text()
    assert "Generated faces" in html
    for measure in ("faces found (Haar)", "attribute modes covered", "FID"):
        assert measure in html, measure
    assert (run_dir / "samples" / "epoch_002.png").exists()
    for picture in report_benchmark.PICTURES:  # what benchmarks.report copies to assets/
        assert (run_dir / picture).exists(), picture
    assert (run_dir / "checkpoints" / "best.pt").exists()
    evaluations = [row for row in read_history(run_dir) if row["kind"] == "eval"]
    assert [row["epoch"] for row in evaluations] == [1, 2]

    executed = json.loads(Path(tmp_path / "reports" / NOTEBOOK.name).read_text())
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    texts = ["".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream"]
    passes = [line for text in texts for line in text.splitlines() if ": passed" in line]
    assert len(passes) == 8, passes
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 7  # real faces, curves, metrics, epochs, samples, walks, nearest
