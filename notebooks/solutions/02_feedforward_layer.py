"""Solutions to the exercises of notebooks/02_feedforward_layer.ipynb (the teacher's version)."""


def affine(X, W, b):
    """Y = X Wᵀ + b: X (N × d), W (k × d), b (k,) → Y (N × k)."""
    return X @ W.T + b


def flatten_batch(images):
    """An image batch (N, C, H, W) as an (N, C·H·W) matrix, each image read channel by
    channel, row by row."""
    return images.reshape(images.shape[0], -1)


def count_parameters(in_features, hidden_sizes, out_features):
    """The number of weights and biases of an MLP in_features → hidden_sizes → out_features."""
    sizes = [in_features, *hidden_sizes, out_features]
    # Layer i maps sizes[i] inputs to sizes[i + 1] units: a weight per pair, a bias per unit.
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
