"""The seeded train/val/test split every data set goes through: the datamodules' `setup`
splits the tensors with it, and the tables split row indices with it (to fit their feature
pipeline on the training rows alone), so both get the same rows from the same seed; k-fold
cross-validation (data.folds, data.fold) cuts its val split from seeded, optionally stratified
folds."""

from __future__ import annotations

import torch

from nnlab.core import ConfigError, is_int

Split = tuple[torch.Tensor, torch.Tensor]


def seeded_splits(
    raw: dict[str, Split],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
    stratify: bool = False,
) -> dict[str, Split]:
    """ "train", "val" and "test" from the source's splits: those it has are kept, and a
    missing test split, then a missing val split, is held out of train at random, from one
    generator seeded with `seed`.

    k-fold cross-validation (`folds`=K): the test split is made exactly as without it; the
    rest (train, and the source's val if it has one) is cut into K folds, seeded, and fold
    `fold` is the val split (val_fraction is not used). `stratify`: each fold gets each class
    in the same proportion (the targets are class indices)."""
    g = torch.Generator().manual_seed(seed)
    train, val, test = raw["train"], raw.get("val"), raw.get("test")
    if test is None:
        train, test = hold_out(train, test_fraction, g)
    if folds:
        pool = train if val is None else tuple(torch.cat(p) for p in zip(train, val, strict=True))
        train, val = k_fold(pool, folds, fold, g, stratify)
    elif val is None:
        train, val = hold_out(train, val_fraction, g)
    return {"train": train, "val": val, "test": test}


def check_folds(folds: int | None, fold: int) -> None:
    """Raises ConfigError unless `folds` is null or an int >= 2 and `fold` one of its folds."""
    if folds is None:
        if fold != 0:
            raise ConfigError(
                f"data.fold={fold} needs data.folds (k-fold cross-validation), e.g. "
                f"data.folds=5 data.fold={fold}"
            )
        return
    if not is_int(folds) or folds < 2:
        raise ConfigError(f"data.folds must be null or an int >= 2, got {folds!r}")
    if not is_int(fold) or not 0 <= fold < folds:
        raise ConfigError(
            f"data.fold must be an int in 0..{folds - 1} for data.folds={folds}, got {fold!r}"
        )


def k_fold(
    data: Split, folds: int, fold: int, g: torch.Generator, stratify: bool
) -> tuple[Split, Split]:
    """(train, val): fold `fold` of `folds` seeded folds of `data` is val, the others train.
    Folds differ in size by one sample at most; stratified, each class is dealt out in turn
    to the folds, so every fold holds it in the same proportion (within one sample)."""
    x, y = data
    n = len(x)
    if n // folds < 2 or n - (n + folds - 1) // folds < 2:
        raise ConfigError(
            f"cannot cut {n} samples into data.folds={folds} folds of 2 samples or more: "
            "use fewer folds"
        )
    which = torch.empty(n, dtype=torch.long)
    if stratify:
        dealt = 0  # deal class after class on from where the last one stopped: even fold sizes
        for c in torch.unique(y):
            members = (y == c).nonzero().flatten()
            members = members[torch.randperm(len(members), generator=g)]
            which[members] = (torch.arange(len(members)) + dealt) % folds
            dealt += len(members)
    else:
        which[torch.randperm(n, generator=g)] = torch.arange(n) % folds
    held = which == fold
    return (x[~held], y[~held]), (x[held], y[held])


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
