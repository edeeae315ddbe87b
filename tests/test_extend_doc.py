"""docs/extend.md is a test (issue 24, item 4): its code blocks, exactly as the page shows them,
build a project folder of a user's own (files written where each block's first line says, shell
blocks run in order in one shell, with `nnlab` and `python` from this environment), and every
run, evaluation and prediction the page makes succeeds with what the page says it shows."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

PAGE = ROOT / "docs" / "extend.md"
# A fenced block: its language and its text.
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
# A file block's first line: `# <relative path>`.
FILE_LINE = re.compile(r"^# ([\w./-]+\.(?:py|yaml))\n")


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))]


def script() -> str:
    """The page as one shell script: each file block written by a quoted here-document (its
    text unchanged), each bash block as it is."""
    parts = ["set -euo pipefail"]
    for language, text in blocks():
        file = FILE_LINE.match(text)
        if language in ("python", "yaml") and file:
            path = file.group(1)
            assert "PAGE_EOF" not in text
            parts.append(f"mkdir -p {shlex.quote(str(Path(path).parent))}")
            parts.append(f"cat > {shlex.quote(path)} <<'PAGE_EOF'\n{text}PAGE_EOF")
        elif language == "bash":
            parts.append(text)
    return "\n".join(parts) + "\n"


def test_every_code_block_is_a_file_a_command_or_output() -> None:
    kinds = [language for language, _ in blocks()]
    assert set(kinds) <= {"", "bash", "python", "yaml", "text"}
    files = [text for language, text in blocks() if language in ("python", "yaml")]
    assert files and all(FILE_LINE.match(text) for text in files)
    assert kinds.count("bash") >= 5


@pytest.mark.timeout(1800)  # ten real runs, evaluations and predictions
def test_the_page_runs_as_shown(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run(
        ["bash", "-c", script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    def results(run: str) -> dict:
        return json.loads((tmp_path / "runs" / run / "results.json").read_text())

    page = PAGE.read_text(encoding="utf-8")
    runs = re.findall(r"hydra\.run\.dir=runs/(\w+)", page)
    assert len(runs) == 5
    for run in runs:
        result = results(run)
        assert result["status"] == "done", run
        assert result["test"]["test/acc"] > 0.6, (run, result["test"])  # better than chance
    # Each run trained what the page says, through the user's own classes and parts.
    assert results("breast_cancer")["spec"]["class_names"] == ["malignant", "benign"]
    assert results("wine")["spec"]["class_names"] == ["class_0", "class_1", "class_2"]
    assert results("shapes_cnn")["spec"]["input_shape"] == [3, 24, 24]
    config = (tmp_path / "runs/shapes_tiny/.hydra/config.yaml").read_text()
    assert "_target_: mypkg.nets.TinyConvNet" in config
    parts = (tmp_path / "runs/breast_cancer_parts/.hydra/config.yaml").read_text()
    assert "name: swish" in parts and "name: orthogonal" in parts and "name: focal" in parts
    # The predictions name the classes, one row per input.
    tumours = (tmp_path / "tumours.csv").read_text().splitlines()
    assert len(tumours) == 21 and {row.split(",")[1] for row in tumours[1:]} <= {
        "malignant",
        "benign",
    }
    assert len((tmp_path / "wine_predictions.csv").read_text().splitlines()) == 179
    circles = (tmp_path / "circles.csv").read_text().splitlines()
    assert len(circles) == 101
    assert sum(",circle," in row for row in circles) >= 80  # a 10-epoch net, mostly right

    # The refusals the page shows, each one error line and no traceback.
    def refused(command: str) -> str:
        failed = subprocess.run(
            [*shlex.split(command), "print_config=false"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
        return errors[0]

    shown = re.search(r"^(error: .*?)…(.*)$", page, re.MULTILINE)  # "…": the class list
    assert shown is not None
    line = refused("nnlab eval ckpt_path=runs/breast_cancer/checkpoints/best.ckpt")
    assert line.startswith(shown.group(1)) and line.endswith(shown.group(2)), line
    assert "plugins=" in line  # how to register it
    search = "hydra.searchpath=[file://configs]"
    line = refused(f"nnlab train data=breast_cancer activation=swish {search}")
    assert "unknown activation 'swish'; valid:" in line and "plugins=" in line
    line = refused(
        f"nnlab train data=breast_cancer activation=swish activation.beta=fast "
        f"plugins=[mypkg.parts] {search}"
    )
    assert "activation.beta must be float, got 'fast'" in line, line
