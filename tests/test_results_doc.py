"""A study writes its table and plot into the README's marked block, and only there."""
import importlib
from pathlib import Path

import pytest

from studies.results_doc import ReadmeBlockError, write_block

README = """# Title

Before the table.

<!-- study:begin -->
| old | table |
<!-- study:end -->

After the table.
"""


def test_the_block_is_replaced_and_the_rest_kept(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    plot = tmp_path / "results" / "study" / "results.png"
    write_block(readme, "study", "| new | table |\n", plot)
    text = readme.read_text()
    assert "old" not in text and "| new | table |" in text
    assert "![study](results/study/results.png)" in text  # relative to the README's folder
    assert text.startswith("# Title\n\nBefore the table.\n\n<!-- study:begin -->\n| new | table |")
    assert text.endswith("<!-- study:end -->\n\nAfter the table.\n")


def test_writing_twice_gives_the_same_file(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    write_block(readme, "study", "| a |", None)
    once = readme.read_text()
    write_block(readme, "study", "| a |", None)
    assert readme.read_text() == once
    assert once.count("| a |") == 1 and "![" not in once


def test_a_plot_outside_the_readme_folder_is_linked_with_dots(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "docs" / "README.md"
    readme.write_text(README)
    write_block(readme, "study", "| a |", tmp_path / "out" / "results.png")
    assert "![study](../out/results.png)" in readme.read_text()


def test_markers_quoted_in_prose_are_not_block_boundaries(tmp_path: Path):
    """Documentation may name the markers (in backticks, mid-sentence); only a marker alone on its line counts."""
    prose = "The study writes between `<!-- study:begin -->` and `<!-- study:end -->`.\n"
    readme = tmp_path / "README.md"
    readme.write_text(prose + README.replace("<!-- study:end -->", "  <!-- study:end -->  "))
    write_block(readme, "study", "| new |")
    text = readme.read_text()
    assert text.startswith(prose) and "old" not in text
    assert "<!-- study:begin -->\n| new |\n  <!-- study:end -->  \n\nAfter the table.\n" in text


@pytest.mark.parametrize("text, problem", [
    ("# no markers\n", "found them 0 and 0 times"),
    (README + "<!-- study:begin -->\n", "found them 2 and 1 times"),
    ("<!-- study:end -->\n<!-- study:begin -->\n", "comes before"),
])
def test_bad_markers_are_named_and_the_file_left_alone(tmp_path: Path, text: str, problem: str):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ReadmeBlockError, match=problem) as error:
        write_block(readme, "study", "| a |")
    assert str(readme) in str(error.value)
    assert readme.read_text() == text


def test_a_missing_readme_is_an_error_naming_it(tmp_path: Path):
    with pytest.raises(ReadmeBlockError, match="no such file"):
        write_block(tmp_path / "README.md", "study", "| a |")


@pytest.mark.parametrize("study", ["studies.weak_slots", "studies.weak_vae", "studies.discovery_ablation"])
def test_a_study_refuses_a_readme_without_its_markers_before_training_anything(tmp_path: Path, study: str):
    """The check comes first: `--finished-only` on an empty folder would otherwise return quietly, and a
    full study would only find out after its last run."""
    readme = tmp_path / "README.md"
    readme.write_text(README)  # markers of another block only
    module = importlib.import_module(study)
    with pytest.raises(SystemExit, match=f"{module.README_BLOCK}:begin") as error:
        module.main(["--out", str(tmp_path / "study"), "--seeds", "0", "--readme", str(readme)])
    assert str(readme) in str(error.value)
    assert not (tmp_path / "study").exists()  # nothing trained, nothing written
    assert readme.read_text() == README


@pytest.mark.parametrize("study", ["studies.weak_slots", "studies.weak_vae", "studies.discovery_ablation"])
def test_a_study_writes_into_its_own_results_document_by_default(tmp_path: Path, study: str):
    """Without --readme the table goes to OUT/README.md: created with the study's markers when missing,
    refused (and left alone) when it exists without them."""
    module = importlib.import_module(study)
    out = tmp_path / "study"
    try:  # nothing has finished: a study summarises nothing, or says so
        module.main(["--out", str(out), "--seeds", "0", "--finished-only"])
    except SystemExit as error:
        assert "no finished runs" in str(error)
    begin, end = f"<!-- {module.README_BLOCK}:begin -->", f"<!-- {module.README_BLOCK}:end -->"
    lines = (out / "README.md").read_text().splitlines()
    assert lines.index(begin) < lines.index(end)
    (out / "README.md").write_text(README)
    with pytest.raises(SystemExit, match=f"{module.README_BLOCK}:begin"):
        module.main(["--out", str(out), "--seeds", "0", "--finished-only"])
    assert (out / "README.md").read_text() == README
