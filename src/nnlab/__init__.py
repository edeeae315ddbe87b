"""nnlab: composable, tested, fast experiments on the foundations of neural networks.

Importing the package is cheap (no torch): the entry points compose their Hydra configs first.
"""

from nnlab.core.components import register_datamodule, register_network

__version__ = "0.1.0"
__all__ = ["register_datamodule", "register_network"]
