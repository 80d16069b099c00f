"""README.md and docs/: figures come from benchmarks/results by the generator, never by hand."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import docs, machine, record
from facegan.runtime import CpuInfo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_committed_pages_are_exactly_what_the_generator_writes():
    stale = docs.regenerate(ROOT, write=False)
    assert not stale, f"run `make docs`: {[page.name for page in stale]} differ from the results"


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", docs.pages(ROOT), ids=lambda page: page.name)
def test_every_file_a_page_links_to_exists(page):
    targets = [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:|#", t)]
    missing = [t for t in targets if not (page.parent / t.split("#")[0]).exists()]
    assert targets and not missing


@pytest.fixture
def project(tmp_path):
    """A small project: one README with prose around one region, and one results file."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(RESULTS / "freeze.json", tmp_path / "benchmarks" / "results")
    (tmp_path / "README.md").write_text(
        "# Title\n\nProse before.\n\n<!-- generated: freeze -->\n"
        "| size | images/s |\n| 32 px | 9999.9 |\n<!-- end generated -->\n\nProse after.\n"
    )
    return tmp_path


def test_a_hand_edited_figure_is_rewritten_and_the_prose_is_left_alone(project):
    readme = project / "README.md"
    assert docs.regenerate(project) == [readme]
    text = readme.read_text()
    assert text.startswith("# Title\n\nProse before.\n\n<!-- generated: freeze -->\n")
    assert text.endswith("<!-- end generated -->\n\nProse after.\n")
    assert "9999.9" not in text
    frozen = json.loads((RESULTS / "freeze.json").read_text())["sizes"]["32px"]
    assert f"| 32 px | {frozen['frozen_images_per_s']:.1f} |" in text


def test_a_second_run_changes_nothing(project):
    docs.regenerate(project)
    first = (project / "README.md").read_text()
    assert docs.regenerate(project) == []
    assert (project / "README.md").read_text() == first


def test_each_table_names_its_command_commit_machine_and_torch(project):
    docs.regenerate(project)
    text = (project / "README.md").read_text()
    assert (
        "- [freeze.json](benchmarks/results/freeze.json): command `python benchmarks/freeze.py`; "
        "commit 403f503; AMD EPYC, 2 cores, no GPU; torch 2.14.1+cu130;" in text
    )


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"avx2", "fma"}, ["AVX2"]),
        ({"avx2", "avx512f", "avx512_bf16"}, ["AVX2", "AVX-512", "AVX512-BF16"]),
        ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, ["AVX2", "AVX-512", "AMX"]),
        (set(), []),
    ],
)
def test_a_results_file_records_the_instruction_sets_that_decide_the_defaults(
    monkeypatch, flags, named
):
    monkeypatch.setattr(machine, "cpu_info", lambda: CpuInfo("Some CPU", frozenset(flags)))
    recorded = record.machine()
    assert (recorded["cpu"], recorded["cpu_features"]) == ("Some CPU", named)


def test_the_cpu_features_a_results_file_records_are_named_beside_the_cpu(project):
    path = project / "benchmarks" / "results" / "freeze.json"
    found = json.loads(path.read_text())
    found["machine"]["cpu_features"] = ["AVX2", "AVX-512", "AVX512-BF16"]
    path.write_text(json.dumps(found))
    docs.regenerate(project)
    text = (project / "README.md").read_text()
    assert "commit 403f503; AMD EPYC (AVX2, AVX-512, AVX512-BF16), 2 cores, no GPU;" in text


def test_what_a_results_file_does_not_record_is_printed_as_not_recorded(project):
    path = project / "benchmarks" / "results" / "freeze.json"
    found = json.loads(path.read_text())
    found.update(command=None, commit=None, torch=None, machine=None)
    path.write_text(json.dumps(found))
    docs.regenerate(project)
    text = (project / "README.md").read_text()
    assert (
        "command not recorded; commit not recorded; CPU not recorded, cores not recorded, "
        "GPU not recorded; torch not recorded;" in text
    )


def test_links_from_a_page_in_docs_are_relative_to_it(project):
    (project / "docs" / "speed.md").write_text(
        "<!-- generated: freeze -->\n<!-- end generated -->\n"
    )
    docs.regenerate(project)
    assert (
        "[freeze.json](../benchmarks/results/freeze.json)"
        in (project / "docs" / "speed.md").read_text()
    )


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- generated: nonesuch -->\n<!-- end generated -->\n", "no table is named 'nonesuch'"),
        ("<!-- generated: freeze -->\nno end\n", "has no `<!-- end generated -->` line"),
        ("<!-- generated: synthfaces -->\n<!-- end generated -->\n", "synthfaces.json is missing"),
    ],
)
def test_a_page_the_generator_cannot_fill_is_refused_with_what_to_do(project, page, message):
    (project / "README.md").write_text(page)
    with pytest.raises(docs.DocsError, match=re.escape(message)):
        docs.regenerate(project)


def test_a_results_file_without_a_field_a_table_reads_names_both(project):
    path = project / "benchmarks" / "results" / "freeze.json"
    found = json.loads(path.read_text())
    del found["sizes"]
    path.write_text(json.dumps(found))
    with pytest.raises(docs.DocsError, match=r"table 'freeze' needs 'sizes', which freeze\.json"):
        docs.regenerate(project)


def test_the_command_line_prints_a_refusal_in_one_line_and_exits_2(project, monkeypatch, capsys):
    (project / "README.md").write_text("<!-- generated: nonesuch -->\n<!-- end generated -->\n")
    monkeypatch.setattr(docs, "REPO", project)
    assert docs.main([]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: README.md: no table is named") and error.count("\n") == 1


def test_check_writes_nothing_and_exits_1_when_a_page_is_stale(project, monkeypatch, capsys):
    monkeypatch.setattr(docs, "REPO", project)
    before = (project / "README.md").read_text()
    assert docs.main(["--check"]) == 1
    assert (project / "README.md").read_text() == before
    assert "README.md: out of date" in capsys.readouterr().out
    assert docs.main([]) == 0
    assert docs.main(["--check"]) == 0


def test_a_results_file_opens_with_what_produced_it(tmp_path):
    path = tmp_path / "results" / "speed.json"
    written = record.write_results(path, {"images_per_s": 12.5})
    found = json.loads(path.read_text())
    assert found == written
    assert list(found)[:5] == ["command", "machine", "torch", "commit", "timestamp"]
    assert found["images_per_s"] == 12.5
    assert set(found["machine"]) == {"cpu", "cpu_features", "cores", "gpu"}
    assert found["torch"] == record.torch.__version__


def test_a_payload_may_not_overwrite_what_produced_it(tmp_path):
    with pytest.raises(ValueError, match=r"\['commit'\]"):
        record.write_results(tmp_path / "x.json", {"commit": "abc"})


def test_the_command_is_written_as_typed_from_the_repository_root():
    script = str(ROOT / "benchmarks" / "freeze.py")
    typed = record.command_line([script, "--sizes", "32"])
    assert typed == "python benchmarks/freeze.py --sizes 32"
    assert (
        record.command_line(["ignored", "--out", "a b.json"], "benchmarks.freeze")
        == "python -m benchmarks.freeze --out 'a b.json'"
    )


def test_the_commit_is_none_outside_git_and_the_short_head_inside(tmp_path):
    assert record.git_commit(tmp_path) is None
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), *identity, "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    commit = record.git_commit(tmp_path)
    assert commit is not None and len(commit) >= 7 and head.startswith(commit)
