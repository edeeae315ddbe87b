"""MLP vs CNN on the same data for the same epochs: docs/extend.md's figure.

Each run is a real `python train.py` (model=mlp or model=cnn, everything else the defaults:
Adam, ReLU, the default init), on cat-vs-dog photos (data=cats_vs_dogs with `--cats` as its
root) and on scikit-learn's 8×8 digits (data=digits), for `--seeds` seeds each. The figure shows
the validation accuracy per epoch (mean over the seeds, the band from the lowest to the highest)
and the legend the test accuracy of each run's best checkpoint (mean ± std over the seeds).

    python benchmarks/mlp_vs_cnn.py --cats ../shared/data/cats_vs_dogs \\
        [--epochs 30] [--seeds 3] [--out docs/figures/mlp_vs_cnn.png] [--work /tmp/mlp_vs_cnn]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn")


def data_sets(cats: Path) -> dict[str, list[str]]:
    """Each panel's title and the train.py overrides that pick its data."""
    return {
        f"cat vs dog ({cats.name}, 64×64 RGB)": ["data=cats_vs_dogs", f"data.root={cats}"],
        "digits (scikit-learn, 8×8 grey)": ["data=digits"],
    }


def train(overrides: list[str], run_dir: Path, data_dir: Path) -> tuple[list[float], float]:
    """Runs train.py into `run_dir` (reused when it has results already), decoded images cached
    in `data_dir`; returns the validation accuracy per epoch and the test accuracy of the best
    checkpoint."""
    results = run_dir / "results.json"
    if not results.is_file():
        command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
        command += [f"paths.data_dir={data_dir}", "print_config=false", "diagnostics=none"]
        command += ["logger=csv"]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    by_epoch: dict[int, float] = {}
    with open(run_dir / "csv" / "metrics.csv", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row.get("val/acc"):
                by_epoch[int(row["epoch"])] = float(row["val/acc"])
    test = json.loads(results.read_text(encoding="utf-8"))["test"]["test/acc"]
    return [by_epoch[e] for e in sorted(by_epoch)], test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cats", type=Path, default=ROOT.parent / "shared/data/cats_vs_dogs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/figures/mlp_vs_cnn.png")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlp_vs_cnn"))
    parser.add_argument("--models", default=",".join(MODELS), help="of mlp, cnn")
    args = parser.parse_args()

    panels = data_sets(args.cats.resolve())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    print(f"| data | model | test acc (mean ± std over {args.seeds} seeds) | per seed |")
    print("|---|---|---|---|")
    for ax, (title, data) in zip(axes[0], panels.items(), strict=True):
        for model in args.models.split(","):
            curves, tests = [], []
            for seed in range(args.seeds):
                overrides = [*data, f"model={model}", f"seed={seed}"]
                overrides.append(f"trainer.max_epochs={args.epochs}")
                run_dir = args.work / f"{data[0].split('=')[1]}_{model}_{seed}_{args.epochs}"
                curve, test = train(overrides, run_dir, args.work / "data")
                curves.append(curve)
                tests.append(test)
            mean_test = statistics.mean(tests)
            std_test = statistics.stdev(tests) if len(tests) > 1 else 0.0
            epochs = range(1, min(len(c) for c in curves) + 1)
            by_epoch = [[c[e - 1] for c in curves] for e in epochs]
            mean = [statistics.mean(v) for v in by_epoch]
            line = ax.plot(
                epochs, mean, label=f"{model.upper()}: test acc {mean_test:.3f} ± {std_test:.3f}"
            )[0]
            low, high = [min(v) for v in by_epoch], [max(v) for v in by_epoch]
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            per_seed = ", ".join(f"{t:.3f}" for t in tests)
            print(f"| {title} | {model} | {mean_test:.3f} ± {std_test:.3f} | {per_seed} |")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"MLP vs CNN: same data, same {args.epochs} epochs, Adam, ReLU "
        f"(mean and range over {args.seeds} seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
