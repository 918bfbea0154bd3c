"""Shared test settings: one torch thread, since the tests' tiny tensors only lose time to thread contention."""

import torch

torch.set_num_threads(1)
