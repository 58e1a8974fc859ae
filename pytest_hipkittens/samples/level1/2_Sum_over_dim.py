import torch
import torch.nn as nn


class Model(nn.Module):
    """Sum-reduction over one dimension, kept as size 1 (pytest-hipkittens sample).

    The reduced dimension is a constructor argument, so a solution has to honour
    get_init_inputs().
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x, dim=self.dim, keepdim=True)


batch = 32
rows = 1024
cols = 256
reduce_dim = 1


def get_inputs():
    return [torch.randn(batch, rows, cols)]


def get_init_inputs():
    return [reduce_dim]
