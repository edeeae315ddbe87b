"""Measures how long a Kaggle-style MNIST CSV (a `label` column and 784 pixel columns of ints
0-255) takes to become a datamodule, and the memory it takes, through the real config:
`data=csv_classification data.path=<csv> data.target=label`, then prepare_data() and
setup("fit"): reading, the seeded split and the feature pipeline.

    PYTHONPATH=src python benchmarks/csv_setup.py [--rows 60000] [--repeats 3]

The table is the 10,000 real MNIST test images of ../shared/data/mnist tiled to `--rows` (random
pixels where that folder is absent), written once to `--csv` (60,000 rows: 110 MB). Each repeat
runs in a fresh process, so its peak RSS (`ru_maxrss`) is that of one setup; the RSS after the
imports is given too. To time another version of the code, point PYTHONPATH at its src (the
config is composed from the configs/ folder next to the nnlab package that is imported):

    git worktree add /tmp/data-before <commit>
    PYTHONPATH=/tmp/data-before/src python benchmarks/csv_setup.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "MNIST" / "raw"
PIXELS = 28 * 28


def mnist_table(rows: int) -> np.ndarray:
    """(rows, 785) uint8: label then pixels, MNIST's test images tiled (or random pixels)."""
    images, labels = MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
    if images.is_file() and labels.is_file():
        x = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8).reshape(-1, PIXELS)
        y = np.frombuffer(gzip.decompress(labels.read_bytes())[8:], np.uint8)
    else:
        print(f"{MNIST} not found: random pixels", file=sys.stderr)
        g = np.random.default_rng(0)
        x = g.integers(0, 256, (10_000, PIXELS), dtype=np.uint8)
        y = g.integers(0, 10, 10_000, dtype=np.uint8)
    table = np.column_stack([y, x])
    return np.resize(table, (rows, table.shape[1]))  # repeats the rows as often as needed


def write_csv(path: Path, rows: int) -> None:
    table = mnist_table(rows)
    header = ",".join(["label", *(f"pixel{i}" for i in range(PIXELS))])
    # Integers as text in one go: a byte table of the digits is much faster than np.savetxt.
    lines = [",".join(map(str, row)) for row in table.tolist()]
    path.write_text("\n".join([header, *lines]) + "\n")


def rss_mb() -> float:
    """Peak RSS so far in MiB (NaN on Windows, which has no getrusage)."""
    from nnlab.speed.report import peak_rss_mib

    return peak_rss_mib()


def measure(csv: Path) -> dict[str, float]:
    """One setup in this process: seconds, RSS after the imports and peak RSS (MB)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import nnlab

    configs = Path(nnlab.__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(version_base="1.3", config_dir=str(configs)):
        cfg = compose("train", ["data=csv_classification", f"data.path={csv}", "data.target=label"])
    dm = instantiate(cfg.data, _convert_="all")
    before = rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    dm.prepare_data()
    dm.setup("fit")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    x, _ = dm.splits["train"]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_imports_mb": before,
        "peak_rss_mb": rss_mb(),
        "features": int(x.shape[1]),
        "train_rows": len(x),
        "module": type(dm).__module__ + "." + type(dm).__name__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=None, help="default: /tmp/mnist_<rows>.csv")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    csv = args.csv or Path(f"/tmp/mnist_{args.rows}.csv")
    if args.child:
        print(json.dumps(measure(csv)))
        return
    if not csv.is_file():
        start = time.perf_counter()
        write_csv(csv, args.rows)
        seconds = time.perf_counter() - start
        print(f"wrote {csv} ({csv.stat().st_size / 1e6:.0f} MB) in {seconds:.1f} s")
    runs = []
    for _ in range(args.repeats):
        command = [sys.executable, __file__, "--child", "--csv", str(csv)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.splitlines()[-1]))
        print(json.dumps(runs[-1]))
    seconds, cpu = [r["seconds"] for r in runs], [r["cpu_seconds"] for r in runs]
    print(
        f"{runs[0]['module']}: {csv.name}, {runs[0]['features']} features: setup "
        f"{min(seconds):.2f} s best, {statistics.median(seconds):.2f} s median of {len(runs)} "
        f"(CPU time {min(cpu):.2f} s best); "
        f"peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MB "
        f"({runs[0]['rss_imports_mb']:.0f} MB after the imports)"
    )


if __name__ == "__main__":
    main()
