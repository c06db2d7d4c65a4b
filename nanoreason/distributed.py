"""Several processes with `torchrun` (DDP) — the standard engine, nothing home-made.

    torchrun --nproc_per_node=2 train_sft.py --device=cpu     # gloo on CPU; nccl on GPUs (one per process)

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; `setup()` joins the process group. Each rank takes its slice of every
batch (`shard`), DDP averages the gradients over ranks in backward, and only rank 0 evaluates and writes files.
The loss must be normalised by the *global* batch (see rl.microbatch_aggregate): each rank divides its token sum by
the tokens of all ranks, times the world size (DDP's average divides by it again).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from nanoreason.config import ConfigError


def setup(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) — world size 1 and nothing to join when not started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return rank, world, device


def shard(items: list, rank: int, world: int, what: str = "batch_size") -> list:
    """This rank's slice of a global batch: items rank, rank + world, ... (every rank gets the same number)."""
    if len(items) % world:
        raise ConfigError(f"{what}={len(items)} cannot be split evenly over {world} processes; use a multiple of "
                          f"{world} or fewer processes")
    return items[rank::world]


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_sum(x: float | torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a number (a tensor on CPU for gloo); the number itself with one process."""
    t = torch.as_tensor(x, dtype=torch.float64).clone()
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()
