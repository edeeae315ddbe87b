"""The optimizer implementation that the speed group asks for (speed.optimizer_impl), and what a
step captured in a CUDA graph needs of its optimizer (speed.cuda_graph)."""

from __future__ import annotations

import torch

from nnlab.core import ConfigError

# The torch.optim optimizers with fused and foreach implementations, and capturable steps.
FAST_OPTIMIZERS = ("Adam", "AdamW", "SGD")


def optimizer_options(cfg: dict, device: torch.device, impl: str | None, graph: bool) -> dict:
    """Extra constructor options for the optimizer config `cfg` (`_target_`, lr, ...).

    impl: "fused" (one kernel per step where PyTorch has one: Adam, AdamW, SGD), "foreach"
    (one kernel per op across all parameters) or None (PyTorch's default); other optimizers
    ignore it. graph: the step will be captured in a CUDA graph; then the learning rate
    becomes a device tensor, so that schedulers (which fill it in place) still act on the
    captured step instead of a constant baked into the graph, and unsupported optimizers are
    refused. `impl` is trusted: nnlab.speed.check_speed validated it.
    """
    name = str(cfg.get("_target_", "")).rsplit(".", 1)[-1]
    known = name in FAST_OPTIMIZERS
    if graph:
        if not known:
            raise ConfigError(
                f"speed.cuda_graph cannot capture the step of optimizer {cfg.get('_target_')}: "
                "supported are torch.optim.Adam, AdamW and SGD; use speed=default for others"
            )
        if name == "SGD" and cfg.get("dampening", 0):
            raise ConfigError(
                "speed.cuda_graph needs SGD dampening=0 (its first momentum step is "
                "special-cased, which a captured step cannot reproduce); use speed=default"
            )
        options = {"fused": True, "lr": torch.tensor(float(cfg.get("lr", 1e-3)), device=device)}
        if name != "SGD":
            options["capturable"] = True
        return options
    if impl is None or not known:
        return {}
    return {impl: True}
