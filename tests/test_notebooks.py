"""The companion notebooks (notebooks/*.ipynb), one per course section: stored without outputs,
and each executed top to bottom in fast mode with nbclient, as a reader would run it, ending
with a cell of asserts on the claims it shows."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SECTIONS = ("01", "02", "03", "04", "05", "06", "07")
FAST_SWITCH = 'os.environ.get("NNLAB_NOTEBOOK_FAST") == "1"'
# Seconds per cell. The slowest cell, a study in fast mode, takes about 10 s alone on 2 cores;
# this leaves room for a machine busy with other tests.
CELL_TIMEOUT = 300


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_one_notebook_per_course_section_in_order() -> None:
    assert [path.name[:2] for path in NOTEBOOKS] == list(SECTIONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(code_cells(nb)):
        assert cell.outputs == [], f"{path.name}: code cell {i} is stored with outputs"
        assert cell.execution_count is None, f"{path.name}: code cell {i} has an execution count"
    assert nb.metadata.kernelspec.name == "python3"
    cells = code_cells(nb)
    assert FAST_SWITCH in cells[0].source, "the first code cell reads NNLAB_NOTEBOOK_FAST"
    assert cells[-1].source.lstrip().startswith("assert "), "the last code cell is the check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom_and_its_claims_hold(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel (the test's own Python) starts in a temporary folder, so the studies' run
    folders (logs/lecture/<time>/<claim>/) land there; any failing cell fails the test."""
    monkeypatch.setenv("NNLAB_NOTEBOOK_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first failing one

    checks = code_cells(nb)[-1]
    assert checks.execution_count is not None, "the check cell did not run"
    assert not [o for o in checks.outputs if o.output_type == "error"]
    for cell in code_cells(nb):  # a cell showing a study's figure shows it as an image
        if ".plots[" in cell.source.splitlines()[-1]:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    for claim in re.findall(r'run_claim\("(\w+)"', "\n".join(c.source for c in code_cells(nb))):
        (verdict,) = tmp_path.glob(f"logs/lecture/*/{claim}/verdict.txt")
        assert verdict.read_text(encoding="utf-8").startswith("HELD"), verdict.read_text()
