"""`python -m nnlab.lecture <claim>|all`: runs the course's claims and prints their verdicts.

Exit status: 0 when every claim run held, 1 when one did not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from nnlab.core import ConfigError
from nnlab.lecture.registry import CLAIMS, options_of, run_all, run_claim
from nnlab.lecture.study import Claim, default_root


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs as a dict, each value read as YAML (64 → int, 1e-3 → float, [1, 2])."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-o takes KEY=VALUE, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def parser() -> argparse.ArgumentParser:
    def describe(name: str) -> str:
        options = ", ".join(  # None: the study picks by mode (fast or full)
            k if v is None else f"{k}={v}" for k, v in options_of(name).items()
        )
        return f"  {name:<16} options: {options}" if options else f"  {name}"

    claims = "\n".join(describe(name) for name in CLAIMS)
    p = argparse.ArgumentParser(
        prog="python -m nnlab.lecture",
        description="Reproduce the course's claims: figures (PNG), numbers (CSV) and a verdict "
        "per claim in a run folder; `all` also writes report.md.",
        epilog=f"claims:\n{claims}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("claim", choices=[*CLAIMS, "all"], metavar="claim", help="a claim, or all")
    p.add_argument("--out", type=Path, help="run folder (default: logs/lecture/<timestamp>)")
    p.add_argument("--fast", action="store_true", help="small sizes: seconds per claim")
    p.add_argument("--seed", type=int, default=0, help="seeds data, initialization and order")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a study's own option (one claim only), e.g. -o width=512 -o depth=50",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out or default_root()
    try:
        options = parse_options(args.option)
        if args.claim == "all":
            if options:
                raise ConfigError("-o options apply to one claim, not to all")
            claims, report = run_all(args.fast, args.seed, out, progress=print_verdict)
            print(f"report: {report}")
        else:
            claims = [run_claim(args.claim, args.fast, args.seed, out, **options)]
            print_verdict(claims[0])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run folder: {out}")
    return 0 if all(c.held for c in claims) else 1


def print_verdict(claim: Claim) -> None:
    print(claim.verdict, flush=True)


if __name__ == "__main__":
    sys.exit(main())
