"""The benchmarks run end to end on the CPU: the speed benchmark reports every path it times,
the epoch-boundary benchmark its boundaries."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


@pytest.mark.slow
def test_speed_benchmark_times_every_cpu_path_in_interleaved_rounds(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("speed_benchmark", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    # Blocks of 16 steps or more: nnlab's paths step in groups of 16.
    args = "--device cpu --n-train 3000 --steps 16 --repeats 2 --warmup 16 --rounds 2"
    bench.main([*args.split(), "--nets", "default", "--batch-sizes", "64", "--json", str(out)])
    (run,) = json.loads(out.read_text())["runs"]
    paths = {"nnlab", "nnlab_max", "nnlab_compile", "bare", "dataloader"}  # graph: CUDA only
    assert set(run["rates"]) == set(run["rounds"]) == paths
    for path in paths:
        assert len(run["rounds"][path]) == 2 and all(r > 0 for r in run["rounds"][path])
        assert min(run["rounds"][path]) <= run["rates"][path] <= max(run["rounds"][path])
    table = capsys.readouterr().out
    assert "| default | 64 |" in table and "nnlab/bare" in table


@pytest.mark.slow
def test_epoch_boundary_benchmark_times_the_boundaries(capsys):
    path = BENCHMARK.with_name("epoch_boundary.py")
    spec = importlib.util.spec_from_file_location("epoch_boundary_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = "--device cpu --speed max --n-train 512 --batch-size 128 --epochs 9"
    result = bench.main(args.split())
    assert 0 < result["median_ms"] <= result["p90_ms"] < 10_000
    # The checkpoint comparison reads a value in every boundary, after its start.
    assert 0 < result["after_read_ms"] < result["median_ms"]
    assert "(3 boundaries)" in capsys.readouterr().out  # 8 boundaries, the first 5 left out
