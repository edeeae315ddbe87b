"""`python -m nnlab.report <sweep folder>`: (re)writes a sweep's report, running or finished."""

from __future__ import annotations

import argparse

from nnlab.report.writer import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nnlab.report",
        description="Write report.csv, report.md, heatmap.png and curves.png into a sweep "
        "folder (a multirun's, e.g. logs/train/multiruns/<sweep>); works while it runs.",
    )
    parser.add_argument("sweep_dir", help="the multirun's folder, holding one folder per job")
    args = parser.parse_args(argv)
    try:
        summary = write_report(args.sweep_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(summary.line)


if __name__ == "__main__":
    main()
