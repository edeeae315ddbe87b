"""The lecture, reproduced: one study per claim of the course, each writing its figures (PNG),
the numbers behind them (CSV) and a one-line verdict into a run folder.

    python -m nnlab.lecture <claim>|all [--out DIR] [--fast] [--seed N] [-o KEY=VALUE]

or, from Python or a notebook:

    from nnlab.lecture import run_claim
    result = run_claim("init_variance", fast=True)
"""

from nnlab.lecture.registry import CLAIMS, options_of, run_all, run_claim
from nnlab.lecture.study import Claim

__all__ = ["CLAIMS", "Claim", "options_of", "run_all", "run_claim"]
