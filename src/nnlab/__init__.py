"""nnlab: composable, tested, fast experiments on the foundations of neural networks.

Importing the package is cheap (no torch): the entry points compose their Hydra configs first.
"""

__version__ = "0.1.0"
