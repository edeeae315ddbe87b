"""Solutions to the exercises of notebooks/01_perceptron.ipynb (the teacher's version)."""

import torch


def perceptron_predict(X, w, b):
    """ŷ (N,) of 0s and 1s: 1 where the score w·x + b of row x of X (N × d) is ≥ 0."""
    return (X @ w + b >= 0).long()


def perceptron_update(w, b, x, y):
    """The new (w, b) after the perceptron rule sees one sample x (d,) of class y (0 or 1)."""
    y_hat = float(x @ w + b >= 0)
    error = y - y_hat  # −1, 0 or 1: only a mistake changes anything
    return w + error * x, torch.as_tensor(b + error, dtype=w.dtype)
