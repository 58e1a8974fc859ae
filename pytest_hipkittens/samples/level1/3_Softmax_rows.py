import torch
import torch.nn as nn


class Model(nn.Module):
    """Softmax over the last dimension of a (batch, features) tensor (pytest-hipkittens sample)."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


batch = 256
features = 4096


def get_inputs():
    # Scaled up so that a softmax without max-subtraction overflows.
    return [torch.randn(batch, features) * 40.0]


def get_init_inputs():
    return []
