"""Host time of nnlab's epoch boundary: from the last training batch of an epoch to the first of
the next, through train.py's Trainer, callbacks and logger (validation off).

    python benchmarks/epoch_boundary.py [--speed max] [--epochs 200] [--n-train 4096]

On a GPU the first host read of a tensor's value in the boundary (`.item()`, `bool()`, ...)
waits for the queued steps, and the GPU idles through the host work that follows it until the
next epoch's first step: so the benchmark also times the boundary from its first host read on,
which a CPU run measures as well (docs/speed.md, "The epoch boundary"). Small data makes
boundaries frequent; figures are medians over epochs after the first five.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed as bench  # benchmarks/speed.py: the same composed config

# Tensor methods that read a value to the host (on a GPU: wait for the queued work).
HOST_READS = ("item", "__bool__", "__float__", "__int__", "tolist")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", default="max", choices=["default", "max"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--net", default="mnist", choices=sorted(bench.NETS))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--n-train", type=int, default=4096, help="training images (per epoch)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import lightning as L
    from hydra.utils import instantiate

    from nnlab.core.hydra import instantiate_group
    from nnlab.data.synthetic import SyntheticImagesDataModule
    from nnlab.speed import FastPath, apply_speed, check_speed, data_options, frozen_heap
    from nnlab.tasks import build_module

    device = torch.device(args.device)

    class Boundaries(L.Callback):
        """Host time from each epoch's last batch end to the next epoch's first batch start
        (no device sync: on a GPU it is the host's side of the boundary), and from the
        boundary's first host read of a tensor value to that start."""

        def __init__(self) -> None:
            self.gaps: list[float] = []
            self.after_read: list[float] = []
            self.last_end, self.first_read, self.epoch = 0.0, None, 0
            self.in_boundary = False

        @contextmanager
        def timing_reads(self) -> Iterator[None]:
            """Notes the time of the boundary's first host read while inside."""
            reads = {name: getattr(torch.Tensor, name) for name in HOST_READS}

            def timed(read):
                def call(tensor, *args):
                    if self.in_boundary and self.first_read is None:
                        self.first_read = time.perf_counter()
                    return read(tensor, *args)

                return call

            for name, read in reads.items():
                setattr(torch.Tensor, name, timed(read))
            try:
                yield
            finally:
                for name, read in reads.items():
                    setattr(torch.Tensor, name, read)

        def on_train_batch_start(self, trainer, *_) -> None:
            now = time.perf_counter()
            if trainer.current_epoch != self.epoch:
                self.gaps.append(now - self.last_end)
                self.after_read.append(now - (self.first_read or now))
                self.epoch = trainer.current_epoch
            self.in_boundary = False

        def on_train_batch_end(self, trainer, *_) -> None:
            self.last_end = time.perf_counter()
            self.first_read, self.in_boundary = None, True

    timer = Boundaries()
    with tempfile.TemporaryDirectory() as out:
        cfg = bench.compose(args.net, args.batch_size, device, args.speed, out)
        cfg.trainer.max_epochs = args.epochs
        check_speed(cfg.speed)  # as train.py: validated once, then applied
        apply_speed(cfg)
        options = data_options(cfg)  # resident: as train.py builds the data
        data = SyntheticImagesDataModule(n_train=args.n_train, n_test=256, seed=0, **options)
        data.setup("fit")
        data.batch_size = args.batch_size
        module = build_module(cfg, data.spec)
        callbacks = [*instantiate_group(cfg.callbacks), FastPath(cfg.speed), timer]
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=instantiate_group(cfg.logger) or False,
            enable_model_summary=False,
        )
        with frozen_heap(), timer.timing_reads():  # frozen as train.py fits
            trainer.fit(module, datamodule=data)
    gaps = sorted(timer.gaps[5:])
    result = {
        "median_ms": statistics.median(gaps) * 1e3,
        "p90_ms": gaps[int(0.9 * len(gaps))] * 1e3,
        "after_read_ms": statistics.median(timer.after_read[5:]) * 1e3,
    }
    print(
        f"{args.speed} on {device.type}, {args.net} net, batch {args.batch_size}, "
        f"{args.n_train} images per epoch: epoch boundary median {result['median_ms']:.2f} ms, "
        f"90th percentile {result['p90_ms']:.2f} ms, from its first host read "
        f"{result['after_read_ms']:.2f} ms ({len(gaps)} boundaries)"
    )
    return result


if __name__ == "__main__":
    main()
