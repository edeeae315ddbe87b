"""Training throughput of nnlab against bare PyTorch loops on the same network, data and optimizer.

    python benchmarks/speed.py [--device cpu|cuda] [--batch-sizes 128 1024] [--nets mnist default]

Paths, each timed over the same training steps (after warm-up) and reported in samples/s:
  nnlab        nnlab's training path as `python train.py` runs it (Lightning Trainer, default
               callbacks and CSV logger), speed=default (16 exact steps per Lightning batch)
  nnlab_max    the same with speed=max (whole-step CUDA graph on a GPU)
  nnlab_compile  speed=default with speed.compile=true (the network through torch.compile;
               its compile time falls in the warm-up steps, not in the timed blocks)
  bare         a bare PyTorch loop over the training split held on the device
  dataloader   a bare loop over a torch DataLoader (TensorDataset, shuffle) with host→device copies
  bare_graph   (CUDA) the bare loop's step captured once as a CUDA graph and replayed
Data: synthetic MNIST-shaped uint8 images (data=synthetic_mnist), so it runs offline.
Nets: `mnist` is 784-64-128-64-10 with BatchNorm; `default` is nnlab's default MLP (model=mlp).
Optimizer: Adam(lr=1e-3) everywhere (optimizer=adam). Each figure is the median of --repeats
blocks of --steps steps (with --rounds N, the median of N such figures, the paths taking
turns). Ratios are to `bare` (and to `bare_graph` for nnlab_max on CUDA).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NETS = {"mnist": {"hidden_sizes": [64, 128, 64], "norm": "batchnorm"}, "default": {}}
PATHS = ("nnlab", "nnlab_max", "nnlab_compile", "bare", "dataloader", "bare_graph")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Block times: `tick(n)` after every n steps; marks (steps, time) each time a block of
    `steps` steps is complete (a loop that reports several steps at once marks a little late,
    and the rate uses the steps actually done)."""

    def __init__(self, device: torch.device, warmup: int, steps: int, repeats: int) -> None:
        self.device, self.warmup, self.steps, self.repeats = device, warmup, steps, repeats
        self.count, self.marks = 0, []

    @property
    def total(self) -> int:
        return self.warmup + self.steps * self.repeats

    def tick(self, n: int = 1) -> bool:
        """Counts n steps; True once all blocks are timed."""
        self.count += n
        if self.count - self.warmup >= len(self.marks) * self.steps:
            sync(self.device)
            self.marks.append((self.count, time.perf_counter()))
        return self.count >= self.total

    def rate(self, batch_size: int) -> float:
        if len(self.marks) < 2:
            raise ValueError(
                f"no complete timed block: nnlab steps in groups (speed.steps_per_batch), so "
                f"--steps and --warmup ({self.steps}, {self.warmup}) should be at least a group"
            )
        pairs = zip(self.marks, self.marks[1:], strict=False)
        return statistics.median((c1 - c0) * batch_size / (t1 - t0) for (c0, t0), (c1, t1) in pairs)


def compose(net: str, batch_size: int, device: torch.device, speed: str, out: str, extra=()):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nnlab.core.hydra import register_resolvers

    register_resolvers()
    overrides = [
        "data=synthetic_mnist",
        f"data.batch_size={batch_size}",
        f"speed={speed}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        f"paths.root_dir={ROOT}",
        f"paths.output_dir={out}",
        "trainer.max_epochs=-1",
        "trainer.min_epochs=0",
        "+trainer.max_steps=-1",
        # Training throughput only: validation (its own, eval-sized path) is not timed.
        "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "test=false",
        # No validation here, so checkpoints follow the train loss.
        "optimized_metric=train/loss",
        "optimized_mode=min",
    ]
    for key, value in NETS[net].items():
        overrides.append(f"model.{key}={json.dumps(value)}")
    overrides += list(extra)
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def run_nnlab(data, net, batch_size, device, clock: Clock, speed: str, extra=()) -> None:
    """nnlab's path: the Trainer, callbacks and logger that train.py builds, speed applied."""
    import lightning as L
    from hydra.utils import instantiate

    from nnlab.core.hydra import instantiate_group
    from nnlab.speed import FastPath, apply_speed, check_speed, frozen_heap
    from nnlab.tasks import build_module

    class Timer(L.Callback):
        """Ticks the clock by the optimizer steps done (several per batch with
        speed.steps_per_batch)."""

        def __init__(self) -> None:
            self.steps = 0

        def on_train_batch_end(self, trainer, *args) -> None:
            done, self.steps = trainer.global_step - self.steps, trainer.global_step
            if clock.tick(done):
                trainer.should_stop = True

    with tempfile.TemporaryDirectory() as out:
        cfg = compose(net, batch_size, device, speed, out, extra)
        cfg.trainer.max_steps = clock.total + 1
        check_speed(cfg.speed)  # as train.py: validated once, then applied
        apply_speed(cfg)
        data = speed_data(data, cfg)
        data.batch_size = batch_size
        module = build_module(cfg, data.spec)
        callbacks = [*instantiate_group(cfg.callbacks), FastPath(cfg.speed), Timer()]
        loggers = instantiate_group(cfg.logger)
        trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_model_summary=False
        )
        with frozen_heap():  # as train.py fits
            trainer.fit(module, datamodule=data)


# The nnlab paths' datamodules, by the speed group's options (nnlab.speed.data_options).
SPEED_DATA: dict[tuple, object] = {}


def speed_data(data, cfg):
    """A datamodule of the same images as `data`, built with the speed group's options as
    train.py builds it (resident); one per set of options, loaded once."""
    from nnlab.data.synthetic import SyntheticImagesDataModule
    from nnlab.speed import data_options

    options = data_options(cfg)
    key = tuple(sorted(options.items()))
    if key not in SPEED_DATA:
        built = SyntheticImagesDataModule(
            n_train=data.n_train, n_test=data.n_test, seed=data.seed, **options
        )
        built.setup("fit")
        SPEED_DATA[key] = built
    return SPEED_DATA[key]


def bare_net(net: str, data, device: torch.device) -> torch.nn.Module:
    """The same network nnlab builds (same init), as a plain nn.Module."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nnlab.tasks import module_class

    with tempfile.TemporaryDirectory() as out:
        cfg = compose(net, 128, device, "default", out)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    spec = data.spec
    outputs = module_class(model, spec.task).output_size(spec)  # the task's, as nnlab sizes it
    return instantiate(
        model, in_features=spec.in_features, out_features=outputs, _convert_="all"
    ).to(device)


def resident(data, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split on the device, normalized once (the bare loops' best case)."""
    x, y = data.splits["train"]
    return data.normalizer(x.float()).to(device), y.to(device)


def run_bare(data, net, batch_size, device, clock: Clock) -> None:
    model = bare_net(net, data, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = resident(data, device)
    loss_fn = torch.nn.functional.cross_entropy
    while True:
        order = torch.randperm(len(x), device=device)
        for idx in order.split(batch_size):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if clock.tick():
                return


def run_dataloader(data, net, batch_size, device, clock: Clock) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    model = bare_net(net, data, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.splits["train"]
    dataset = TensorDataset(data.normalizer(x.float()), y)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, pin_memory=device.type == "cuda"
    )
    loss_fn = torch.nn.functional.cross_entropy
    while True:
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if clock.tick():
                return


def run_bare_graph(data, net, batch_size, device, clock: Clock) -> None:
    """The whole step (forward, loss, backward, capturable Adam) as one CUDA graph."""
    model = bare_net(net, data, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    x, y = resident(data, device)
    loss_fn = torch.nn.functional.cross_entropy
    static_x, static_y = x[:batch_size].clone(), y[:batch_size].clone()

    def step() -> None:
        loss = loss_fn(model(static_x), static_y)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    n = len(x) // batch_size * batch_size  # full batches only
    while True:
        order = torch.randperm(len(x), device=device)[:n]
        for idx in order.split(batch_size):
            static_x.copy_(x[idx])
            static_y.copy_(y[idx])
            graph.replay()
            if clock.tick():
                return


# Extra overrides for the nnlab_max path (--max-overrides).
MAX_OVERRIDES: list[str] = []
RUNNERS: dict[str, Callable] = {
    "nnlab": lambda *a: run_nnlab(*a, speed="default"),
    "nnlab_max": lambda *a: run_nnlab(*a, speed="max", extra=MAX_OVERRIDES),
    "nnlab_compile": lambda *a: run_nnlab(*a, speed="default", extra=["speed.compile=true"]),
    "bare": run_bare,
    "dataloader": run_dataloader,
    "bare_graph": run_bare_graph,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["mnist", "default"])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--steps", type=int, default=200, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks (median reported)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every path this many times, interleaved, and report the median round "
        "(evens out a shared machine's load drifting from one path to the next)",
    )
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--max-overrides", nargs="*", default=[], help="config overrides for nnlab_max"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    MAX_OVERRIDES[:] = args.max_overrides
    device = torch.device(args.device)
    paths = [p for p in args.paths if p != "bare_graph" or device.type == "cuda"]

    from nnlab.data.synthetic import SyntheticImagesDataModule

    data = SyntheticImagesDataModule(n_train=args.n_train, n_test=1000, seed=0)
    data.setup("fit")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    print(f"device: {name} ({threads} CPU threads), torch {torch.__version__}", flush=True)
    print(
        f"data: {len(data.splits['train'][0])} synthetic MNIST-shaped train images; "
        f"{args.repeats} blocks of {args.steps} steps after {args.warmup} warm-up steps",
        flush=True,
    )
    results: dict = {"device": name, "torch": torch.__version__, "runs": []}
    for net in args.nets:
        for batch_size in args.batch_sizes:
            rounds: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                for path in paths:
                    torch.manual_seed(0)
                    # speed=max sets TF32 process-wide; every other path runs in true fp32.
                    torch.set_float32_matmul_precision("highest")
                    clock = Clock(device, args.warmup, args.steps, args.repeats)
                    try:
                        RUNNERS[path](data, net, batch_size, device, clock)
                        rate = clock.rate(batch_size)
                    except Exception as e:
                        # Report and go on: one failing path must not hide the rest. On a line
                        # of its own: a progress bar may have left the cursor mid-line.
                        print(f"\n  {path}: FAILED: {type(e).__name__}: {e}", flush=True)
                        continue
                    finally:
                        gc.collect()
                    rounds.setdefault(path, []).append(rate)
                    tag = f" (round {round_ + 1})" if args.rounds > 1 else ""
                    print(f"  {net} b={batch_size} {path}{tag}: {rate:,.0f} samples/s", flush=True)
            rates = {path: statistics.median(r) for path, r in rounds.items()}
            results["runs"].append(
                {"net": net, "batch_size": batch_size, "rates": rates, "rounds": rounds}
            )
    print_table(results["runs"], device)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def print_table(runs: list[dict], device: torch.device) -> None:
    cols = [p for p in PATHS if any(p in r["rates"] for r in runs)]
    head = ["net", "batch", *cols, "nnlab/bare", "max/bare", "compile/bare"]
    if device.type == "cuda":
        head.append("max/graph")
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in runs:
        rates = r["rates"]

        def ratio(a: str, b: str, rates=rates) -> str:
            return f"{rates[a] / rates[b]:.2f}" if a in rates and b in rates else "-"

        row = [r["net"], str(r["batch_size"])]
        row += [f"{rates[c]:,.0f}" if c in rates else "-" for c in cols]
        row += [ratio("nnlab", "bare"), ratio("nnlab_max", "bare"), ratio("nnlab_compile", "bare")]
        if device.type == "cuda":
            row.append(ratio("nnlab_max", "bare_graph"))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
