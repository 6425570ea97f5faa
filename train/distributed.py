"""Multi-process data parallel under ``torchrun`` (torch.distributed; gloo on CPU, NCCL on CUDA).

Gradients are averaged with one flattened all-reduce per optimiser step instead of through the
``DistributedDataParallel`` wrapper: the papers' recipes call sub-networks directly (Reblur alternates M_D and
M_R, GradientNet steps its critic five times per generator step), which DDP's one-forward-one-backward
hooks do not fit. Every rank starts from rank 0's weights and applies the same averaged gradients, so the
replicas stay identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def initialise(device: str | None = None) -> Context:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        target = torch.device("cuda", local)
    else:
        target = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Context(rank=rank, world=world, device=target)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_parameters(module: nn.Module, context: Context) -> None:
    if context.world == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(parameters, context: Context) -> None:
    """All-reduce the gradients of ``parameters`` in one flat buffer and divide by the world size."""
    if context.world == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= context.world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def barrier(context: Context) -> None:
    if context.world > 1:
        dist.barrier()
