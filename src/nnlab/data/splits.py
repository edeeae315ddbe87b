"""The seeded train/val/test split every data set goes through: the datamodules' `setup`
splits the tensors with it, and the tables split row indices with it (to fit their feature
pipeline on the training rows alone), so both get the same rows from the same seed."""

from __future__ import annotations

import torch

from nnlab.core import ConfigError

Split = tuple[torch.Tensor, torch.Tensor]


def seeded_splits(
    raw: dict[str, Split], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Split]:
    """ "train", "val" and "test" from the source's splits: those it has are kept, and a
    missing test split, then a missing val split, is held out of train at random, from one
    generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    train, val, test = raw["train"], raw.get("val"), raw.get("test")
    if test is None:
        train, test = hold_out(train, test_fraction, g)
    if val is None:
        train, val = hold_out(train, val_fraction, g)
    return {"train": train, "val": val, "test": test}


def hold_out(data: Split, fraction: float, g: torch.Generator) -> tuple[Split, Split]:
    """A random split into (1 − fraction, fraction) parts, each of 2 samples or more."""
    x, y = data
    # Two at least on each side: metrics such as R² are undefined on one sample.
    n_held = max(2, round(len(x) * fraction))
    if len(x) - n_held < 2:
        raise ConfigError(
            f"cannot hold out {fraction:.0%} of only {len(x)} samples and keep 2 on each side: "
            "use more data, or change data.val_fraction / data.test_fraction"
        )
    order = torch.randperm(len(x), generator=g)
    keep, held = order[n_held:], order[:n_held]
    return (x[keep], y[keep]), (x[held], y[held])
