import torch
import torch.nn as nn


class Model(nn.Module):
    """Elementwise ReLU on a 2-D activation tensor (pytest-hipkittens sample)."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


rows = 512
cols = 8192


def get_inputs():
    return [torch.randn(rows, cols)]


def get_init_inputs():
    return []
