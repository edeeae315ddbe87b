"""Solutions to the exercises of notebooks/05_nonlinearities.ipynb (the teacher's version)."""

import torch


def leaky_relu(x, negative_slope):
    """x for x ≥ 0, negative_slope·x for x < 0."""
    return torch.where(x >= 0, x, negative_slope * x)


def tanh_derivative(x):
    """tanh′(x) = 1 − tanh(x)²."""
    return 1 - torch.tanh(x) ** 2


def sigmoid_derivative(x):
    """σ′(x) = σ(x)·(1 − σ(x))."""
    s = torch.sigmoid(x)
    return s * (1 - s)
