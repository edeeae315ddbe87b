"""What every study shares: its run folder, the files it writes there, and the `Claim` it
returns (a verdict, the numbers behind it, its figures and tables).

Layout of a run folder (the default root is logs/lecture/<timestamp>/):

    <root>/<claim>/*.png        the claim's figures
    <root>/<claim>/*.csv        the numbers behind them
    <root>/<claim>/verdict.txt  one line: HELD or NOT HELD, and the key numbers
    <root>/report.md            `all` only: every verdict, figure and table
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nnlab.core import ConfigError

FIGURE_DPI = 110


def default_root() -> Path:
    """A fresh run folder under the launch folder: logs/lecture/<timestamp>."""
    return Path.cwd() / "logs" / "lecture" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


@dataclass(frozen=True)
class Claim:
    """A study's result: whether the course's claim held, one line saying so with its key
    numbers, the numbers themselves, and what was written (paths) and drawn (figures, tables).

    In a notebook, `claim.plots["name"]` displays a figure, `claim.frames["name"]` a table;
    `claim.fits["name"]` is a model a figure draws (a nnlab.lecture.fitting.Fit), to query.
    """

    name: str
    held: bool
    statement: str
    numbers: dict[str, Any]
    folder: Path
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    plots: dict[str, Figure] = field(default_factory=dict, repr=False)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    fits: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> str:
        """The one line written to verdict.txt."""
        return f"{'HELD' if self.held else 'NOT HELD'} {self.name}: {self.statement}"

    def _repr_html_(self) -> str:
        """In Jupyter: the verdict, then every figure (embedded: the notebook needs no path)."""
        images = "".join(
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(path.read_bytes()).decode()}"/>'
            for name, path in self.figures.items()
        )
        return f"<p><b>{html.escape(self.verdict)}</b></p>{images}"


@dataclass
class Run:
    """One claim's run: its settings (`fast`, `seed`), its folder, and what it has written.

    A study draws with `figure`, saves with `save` and `table`, keeps the models its figures
    draw in `fits` (so that a test can check a figure against them), and ends with `claim`.
    """

    name: str
    folder: Path
    fast: bool = False
    seed: int = 0
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    plots: dict[str, Figure] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    fits: dict[str, Any] = field(default_factory=dict)

    def size(self, fast: Any, full: Any) -> Any:
        """`fast` in fast mode (tests, quick looks), else `full`."""
        return fast if self.fast else full

    def figure(
        self, name: str, ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.8)
    ) -> tuple[Figure, list[Axes]]:
        """A new figure of nrows × ncols panels, each `size` inches, saved by `save(name)`.

        A plain Figure (no pyplot): nothing global to close, and it still displays in Jupyter.
        """
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        self.plots[name] = fig
        return fig, axes

    def save(self, name: str) -> Path:
        """Writes figure `name` as <folder>/<name>.png."""
        path = self.folder / f"{name}.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.plots[name].savefig(path, dpi=FIGURE_DPI)
        self.figures[name] = path
        return path

    def table(self, name: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Writes `rows` (a DataFrame or dicts, one per row) as <folder>/<name>.csv."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        path = self.folder / f"{name}.csv"
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        self.tables[name], self.frames[name] = path, frame
        return frame

    def check(self, option: str, value: Any, valid: bool, expected: str) -> None:
        """Refuses a study option's bad value before any work: ConfigError naming the claim,
        the option, its value and what is valid (the CLI prints it as one `error:` line)."""
        if not valid:
            raise ConfigError(f"{self.name}: option {option}={value!r} is not valid; {expected}")

    def claim(self, held: bool, statement: str, **numbers: Any) -> Claim:
        """The study's Claim; writes verdict.txt."""
        claim = Claim(
            self.name,
            bool(held),
            statement,
            numbers,
            self.folder,
            dict(self.figures),
            dict(self.tables),
            dict(self.plots),
            dict(self.frames),
            dict(self.fits),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "verdict.txt").write_text(claim.verdict + "\n", encoding="utf-8")
        return claim


def write_report(root: Path, claims: list[Claim], settings: str) -> Path:
    """<root>/report.md: a verdict table, then each claim's verdict, figures and tables."""
    held = sum(c.held for c in claims)
    lines = [
        "# The lecture, reproduced",
        "",
        f"{held} of {len(claims)} claims held ({settings}).",
        "",
        "| claim | verdict |",
        "|---|---|",
        *(f"| [{c.name}](#{c.name}) | {'held' if c.held else '**not held**'} |" for c in claims),
    ]
    for c in claims:
        lines += ["", f"## {c.name}", "", c.verdict, ""]
        for name, path in c.figures.items():
            lines += [f"![{c.name}: {name}]({path.relative_to(root).as_posix()})", ""]
        tables = ", ".join(
            f"[{name}.csv]({path.relative_to(root).as_posix()})" for name, path in c.tables.items()
        )
        lines += [f"Numbers: {tables}"] if tables else []
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
