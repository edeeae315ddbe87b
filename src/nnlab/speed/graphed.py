"""The whole training step (forward, loss, backward, optimizer step, metric sums) captured once
as a CUDA graph and replayed per batch: speed=max on a GPU.

Small networks are bound by kernel launches and Python, not arithmetic; a replay launches the
step's few hundred kernels with one call. See torch.cuda.graphs, "whole network capture".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# (x, y) -> loss; must be capturable: no host syncs, static shapes. It may add to device
# accumulators (metric sums): inside the graph those additions replay with every step.
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Iterations run eagerly on a side stream before capture, so that lazy initialisation (cuBLAS
# workspaces, autograd buffers, optimizer state, accumulators) happens outside the graph.
WARMUP_STEPS = 3


class GraphedStep:
    """Runs training steps of `step_fn` + `optimizer.step()`, replaying one CUDA graph per batch.

    The graph is captured at the first call, for that batch's shape, over static input buffers
    that every call copies its batch into. A batch of another shape (the ragged last batch of an
    epoch) runs the same step eagerly, on the same parameters, optimizer state and gradient
    buffers, so results are exact either way. Warm-up and capture leave the model and
    optimizer exactly as they were (the warm-up steps are undone), and `reset` is called after
    them to zero the step's accumulators. Nothing is read back to the host per step.

    The optimizer must be graph-safe: step counters and learning rate as device tensors (see
    nnlab.speed.optim.optimizer_options).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        step_fn: StepFn,
        reset: Callable[[], None],
    ) -> None:
        self.module, self.optimizer, self.step_fn, self.reset = module, optimizer, step_fn, reset
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_loss: torch.Tensor | None = None

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.step_fn(x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step on (x, y); returns the loss as a device tensor."""
        if self.graph is None:
            self._capture(x, y)
        sx, sy = self.static
        if x.shape == sx.shape and y.shape == sy.shape:
            sx.copy_(x, non_blocking=True)
            sy.copy_(y, non_blocking=True)
            self.graph.replay()
            return self.static_loss
        # Zero (not free) the gradients: they are the graph's static gradient buffers.
        self.optimizer.zero_grad(set_to_none=False)
        return self._step(x, y)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        saved = _snapshot(self.module, self.optimizer)
        self.static = (x.clone(), y.clone())
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._step(*self.static)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Gradients allocated inside the capture become the graph's static gradient buffers.
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self.static_loss = self._step(*self.static)
        _restore(self.module, self.optimizer, saved)
        self.reset()
        self.graph = graph


def _snapshot(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {
        "module": {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()},
        "optimizer": {
            id(p): {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
            for p, s in optimizer.state.items()
        },
    }


@torch.no_grad()
def _restore(module: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Copies the snapshot back in place (the graph holds these tensors' addresses).

    Optimizer state made during warm-up did not exist before: it is zeroed, which is its
    initial value for Adam/AdamW (moments, step) and for SGD momentum without dampening
    (the first step's buffer, 0·momentum + grad, is the grad itself).
    """
    for k, v in module.state_dict(keep_vars=True).items():
        v.data.copy_(saved["module"][k])
    for p, state in optimizer.state.items():
        before = saved["optimizer"].get(id(p), {})
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                v.copy_(before[k]) if k in before else v.zero_()
