"""Exponential moving average of a model's weights (beyond the reference).

After every optimiser step t = 1, 2, … the average moves towards the trained model:

    avg ← d_t · avg + (1 − d_t) · θ_t,   d_t = min(decay, (1 + t) / (10 + t))

for every parameter and floating-point buffer (batch-norm running statistics); integer buffers
(batch counters) are copied. The ramp d_t (as TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``) lets the average forget its starting point within the first ~10 steps when the
model starts from random weights; afterwards the average spans ≈ 1 / (1 − decay) steps. At a
constant learning rate the average smooths the step-to-step noise of the weights, as annealing
the rate does, so a long run can stop, be evaluated and resume at any point without restarting
its schedule.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def check_decay(decay: float) -> None:
    """ValueError unless 0 < `decay` < 1."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay {decay}: need 0 < decay < 1")


class WeightAverage:
    """Moving average of `model`'s weights, held in a copy of the model (`module`, eval mode).

    Args:
        model: the model being trained; the average starts as a copy of its current weights.
        decay: 0 < decay < 1; the average spans about 1 / (1 − decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        check_decay(decay)
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        """d_t of the next update."""
        t = self.updates + 1
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s weights (same architecture)."""
        weight = 1.0 - self.current_decay()
        for (name, avg), (other, value) in zip(
            self.module.state_dict().items(), model.state_dict().items(), strict=True
        ):
            if name != other:
                raise ValueError(f"weight average: {name} is not {other}")
            if avg.is_floating_point():
                avg.lerp_(value.detach(), weight)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (the module's state dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore averaged weights and the number of updates behind them."""
        self.module.load_state_dict(state, strict=True)
        self.updates = updates
