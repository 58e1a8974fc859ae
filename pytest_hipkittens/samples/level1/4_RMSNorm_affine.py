import torch
import torch.nn as nn


class Model(nn.Module):
    """RMS normalisation over the last dimension with a learned scale (pytest-hipkittens sample).

    y = x / sqrt(mean(x^2, -1) + eps) * weight. The feature size and eps come from
    get_init_inputs(); the weight is random so an implementation that ignores it fails.
    """

    def __init__(self, features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x / rms * self.weight


tokens = 4096
features = 1024
eps = 1e-5


def get_inputs():
    return [torch.randn(tokens, features)]


def get_init_inputs():
    return [features, eps]
