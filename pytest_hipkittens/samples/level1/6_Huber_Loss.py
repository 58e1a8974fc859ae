import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """Mean Huber (smooth L1) loss between predictions and targets (pytest-hipkittens sample)."""

    def __init__(self, delta: float):
        super().__init__()
        self.delta = delta

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(predictions, targets, delta=self.delta)


batch = 256
dim = 8192
delta = 1.0


def get_inputs():
    return [torch.randn(batch, dim), torch.randn(batch, dim)]


def get_init_inputs():
    return [delta]
