"""gdas: Gradient-based search using Differentiable Architecture Sampling (Dong & Yang, CVPR 2019)."""

__version__ = "0.1.0"
