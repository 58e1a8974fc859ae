import torch
import torch.nn as nn


class Model(nn.Module):
    """Dense matrix multiplication C = A @ B (pytest-hipkittens sample)."""

    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


M = 256
K = 512
N = 384


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []
