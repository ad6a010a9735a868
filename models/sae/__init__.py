"""Sparse autoencoders: the module (TopK, BatchTopK, Matryoshka), its sparse torch kernels,
the autograd training step and the compiled CPU step (numba kernels, certified bf16
selection), the training loop, metrics, checkpoints, the sweep rule, embedding sources and
batched encoding.

May import torch, numba, numpy, pyarrow, safetensors, `data_contracts` and `models.devices`.
"""
