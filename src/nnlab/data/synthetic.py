"""Synthetic image data shaped like a real data set, generated offline from a seed: lets the
benchmark and the speed tests run the MNIST-sized path with no download."""

from __future__ import annotations

import torch

from nnlab.core import ConfigError
from nnlab.core.components import register_datamodule
from nnlab.data.base import ArrayDataModule, Split


@register_datamodule
class SyntheticImagesDataModule(ArrayDataModule):
    """uint8 grey images (N, 1, H, W) in `num_classes` classes, MNIST-shaped by default.

    Each class is a random smooth prototype image; a sample is its class prototype, shifted by
    up to `max_shift` pixels and with Gaussian pixel noise, so that a linear model is good but
    not perfect and an MLP does better.
    """

    task = "multiclass"

    def __init__(
        self,
        n_train: int = 60_000,
        n_test: int = 10_000,
        image_size: int = 28,
        num_classes: int = 10,
        noise: float = 200.0,
        max_shift: int = 5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if n_train < 2 or n_test < 1 or image_size < 4 or num_classes < 2:
            raise ConfigError(
                "data: synthetic images need n_train >= 2, n_test >= 1, image_size >= 4 and "
                f"num_classes >= 2, got {n_train}, {n_test}, {image_size}, {num_classes}"
            )
        self.n_train, self.n_test, self.image_size = n_train, n_test, image_size
        self.num_classes, self.noise, self.max_shift = num_classes, noise, max_shift

    def _images(self, n: int, prototypes: torch.Tensor, g: torch.Generator) -> Split:
        y = torch.randint(0, self.num_classes, (n,), generator=g)
        x = prototypes[y]
        if self.max_shift:
            # A random translation per sample (wrapping at the border), by gathering rows/cols.
            s = self.max_shift
            dy = torch.randint(-s, s + 1, (n,), generator=g)
            dx = torch.randint(-s, s + 1, (n,), generator=g)
            rows = (torch.arange(self.image_size) - dy[:, None]) % self.image_size
            cols = (torch.arange(self.image_size) - dx[:, None]) % self.image_size
            x = x.gather(1, rows[:, :, None].expand(-1, -1, self.image_size))
            x = x.gather(2, cols[:, None, :].expand(-1, self.image_size, -1))
        x = x + self.noise * torch.randn(x.shape, generator=g)
        return x.clamp(0, 255).round().to(torch.uint8).unsqueeze(1), y

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        g = torch.Generator().manual_seed(self.seed)
        size = self.image_size
        # Smooth prototypes: coarse random blobs upsampled to the image size, scaled to 0..255.
        coarse = torch.rand(self.num_classes, 1, 7, 7, generator=g)
        protos = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
        protos = (protos.squeeze(1) - 0.3).clamp_min(0) * (255 / 0.7)
        return (
            {
                "train": self._images(self.n_train, protos, g),
                "test": self._images(self.n_test, protos, g),
            },
            tuple(str(c) for c in range(self.num_classes)),
        )
