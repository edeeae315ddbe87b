"""The toy data sets: small, made offline (scikit-learn's bundled digits, or drawn from a
seed), each showing one idea of the course."""

from __future__ import annotations

import itertools
import math

import torch

from nnlab.core import ConfigError
from nnlab.core.components import register_datamodule
from nnlab.data.base import ArrayDataModule, Split

# SeparableDataModule refuses a margin that would take more rounds of rejection sampling.
MAX_DRAWS = 100


def check_at_least(key: str, value: float, low: float, meaning: str) -> None:
    """Refuses data.<key> below `low`; `meaning` says what the key is."""
    if value < low:
        raise ConfigError(f"data.{key} must be >= {low} ({meaning}), got {value}")


@register_datamodule
class DigitsDataModule(ArrayDataModule):
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes, no download)."""

    task = "multiclass"

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.images).float().unsqueeze(1)  # (N, 1, 8, 8), values 0..16
        y = torch.from_numpy(digits.target).long()
        return {"train": (x, y)}, tuple(str(c) for c in digits.target_names)


@register_datamodule
class XORDataModule(ArrayDataModule):
    """Points around the corners of the unit square, labelled x₁ XOR x₂ (binary)."""

    task = "binary"

    def __init__(self, samples_per_corner: int = 100, noise: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        check_at_least("noise", noise, 0, "the standard deviation around each corner")
        self.samples_per_corner, self.noise = samples_per_corner, noise
        if self.corner_sizes(samples_per_corner)["train"] < 1:
            least = next(n for n in itertools.count(1) if self.corner_sizes(n)["train"] >= 1)
            raise ConfigError(
                f"data.samples_per_corner must be >= {least} for data.test_fraction="
                f"{self.test_fraction} and data.val_fraction={self.val_fraction} (each split "
                f"needs a point at every corner), got {samples_per_corner}"
            )

    def corner_sizes(self, n: int) -> dict[str, int]:
        """The points per corner of each split, out of `n`: test and validation get their
        fractions, at least one each, and training the rest."""
        n_test = max(1, round(n * self.test_fraction))
        n_val = max(1, round((n - n_test) * self.val_fraction))
        return {"train": n - n_test - n_val, "val": n_val, "test": n_test}

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        # Every split gets the same number of points per corner, so the 75 % ceiling of a
        # linear model holds on each split, not only on average.
        sizes = self.corner_sizes(self.samples_per_corner)
        g = torch.Generator().manual_seed(self.seed)
        corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        labels = (corners[:, 0] != corners[:, 1]).long()
        splits = {}
        for name, size in sizes.items():
            x = corners.repeat_interleave(size, dim=0)
            x = x + self.noise * torch.randn(x.shape, generator=g)
            splits[name] = (x, labels.repeat_interleave(size))
        return splits, ("0", "1")


@register_datamodule
class SeparableDataModule(ArrayDataModule):
    """Two classes split by a random hyperplane, with no point closer to it than `margin`."""

    task = "binary"

    def __init__(
        self, n_samples: int = 500, n_features: int = 2, margin: float = 0.2, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        check_at_least("n_features", n_features, 1, "input dimensions")
        check_at_least("margin", margin, 0, "the smallest distance to the hyperplane")
        self.n_samples, self.n_features, self.margin = n_samples, n_features, margin
        if self.kept_fraction() * MAX_DRAWS < 1:
            raise ConfigError(
                f"data.margin={margin} keeps {self.kept_fraction():.1e} of the points drawn "
                "(they spread about 2 around the hyperplane): use a smaller margin"
            )

    def hyperplane(self) -> tuple[torch.Tensor, float, torch.Generator]:
        """The unit normal w and offset b of the seeded hyperplane w·x + b = 0, and the
        generator that drew them (it goes on to draw the points)."""
        g = torch.Generator().manual_seed(self.seed)
        w = torch.randn(self.n_features, generator=g)
        return w / w.norm(), float(torch.randn((), generator=g)), g

    def kept_fraction(self) -> float:
        """The share of drawn points outside the margin: along w they are N(b, 2²)."""
        b, m, scale = self.hyperplane()[1], self.margin, 2 * math.sqrt(2)
        return 1 - 0.5 * (math.erf((m - b) / scale) - math.erf((-m - b) / scale))

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        w, b, g = self.hyperplane()
        x = torch.empty(0, self.n_features)
        while len(x) < self.n_samples:  # rejection sampling: drop points inside the margin
            cand = 2.0 * torch.randn(self.n_samples, self.n_features, generator=g)
            x = torch.cat([x, cand[(cand @ w + b).abs() >= self.margin]])
        x = x[: self.n_samples]
        y = (x @ w + b > 0).long()
        return {"train": (x, y)}, ("0", "1")


@register_datamodule
class LinearRegressionDataModule(ArrayDataModule):
    """y = x·w + b + ε with ε ~ N(0, noise²); the true w and b are `true_weight`, `true_bias`.

    Args:
        outlier_fraction: share of the training split's targets made outliers (after the
            seeded split; validation and test stay clean), chosen at random from the seed.
        outlier_shift: what is added to each outlier target, in standard deviations of the
            clean training targets (positive: the outliers all lie above the line, which pulls
            a least-squares fit up and much less an L1 or Huber one).
    """

    task = "regression"

    def __init__(
        self,
        n_samples: int = 1000,
        n_features: int = 5,
        noise: float = 0.1,
        outlier_fraction: float = 0.0,
        outlier_shift: float = 10.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_at_least("n_features", n_features, 1, "input dimensions")
        check_at_least("noise", noise, 0, "the standard deviation of the noise")
        if not 0.0 <= outlier_fraction < 1.0:
            raise ConfigError(f"data.outlier_fraction must be in [0, 1), got {outlier_fraction}")
        self.n_samples, self.n_features, self.noise = n_samples, n_features, noise
        self.outlier_fraction, self.outlier_shift = outlier_fraction, outlier_shift
        g = torch.Generator().manual_seed(self.seed)
        self.true_weight = torch.randn(n_features, generator=g)
        self.true_bias = float(torch.randn((), generator=g))
        # The training samples made outliers (indices into the training split), once set up.
        self.outliers = torch.empty(0, dtype=torch.long)

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        g = torch.Generator().manual_seed(self.seed + 1)
        x = torch.randn(self.n_samples, self.n_features, generator=g)
        noise = self.noise * torch.randn(self.n_samples, generator=g)
        y = x @ self.true_weight + self.true_bias + noise
        return {"train": (x, y)}, ()

    def corrupt_train(self, train: Split) -> Split:
        x, y = train
        n = round(self.outlier_fraction * len(y))
        if n == 0:
            return train
        g = torch.Generator().manual_seed(self.seed + 2)
        self.outliers = torch.randperm(len(y), generator=g)[:n]
        y = y.clone()
        y[self.outliers] += self.outlier_shift * y.std()
        return x, y
