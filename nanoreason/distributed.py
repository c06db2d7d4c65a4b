"""Several processes with `torchrun` (DDP) — the standard engine, nothing home-made.

    torchrun --nproc_per_node=2 train_sft.py --device=cpu     # gloo on CPU; nccl on GPUs (one per process)
    torchrun --nproc_per_node=2 train_grpo.py --device=cpu    # every train_*.py

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; `setup()` joins the process group. Each rank takes its slice of every
batch (`shard`: SFT examples, RL prompts), samples its own rollouts (`rank_seed`), DDP averages the gradients over
ranks in backward, log rows are averaged over ranks (`all_mean`), and only rank 0 evaluates and writes files.
The loss must be normalised by the *global* batch (see rl.microbatch_agg_loss): a token-mean is this rank's token
sum over the tokens of all ranks, times the world size (DDP's average divides by it again) — `token_scale`; a mean
over answers needs nothing, every rank holds as many. Batch statistics (advantage whitening) are taken over all
ranks too (`masked_whiten`).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from nanoreason import rl
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
    # GPUs: nccl for DDP's gradients, gloo for the small CPU tensors of the helpers below (counts, log rows)
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.startswith("cuda") else "gloo",
                            timeout=datetime.timedelta(hours=2))   # rank 0 evaluates alone while the others wait
    return rank, world, device


def per_rank(n: int, world: int, what: str = "batch_size") -> int:
    """A global batch size split evenly over the ranks: n / world, or one line naming `what`."""
    if n % world:
        raise ConfigError(f"{what}={n} cannot be split evenly over {world} processes; use a multiple of {world} or "
                          f"fewer processes")
    return n // world


def shard(items: list, rank: int, world: int, what: str = "batch_size") -> list:
    """This rank's slice of a global batch: items rank, rank + world, ... (every rank gets the same number)."""
    per_rank(len(items), world, what)
    return items[rank::world]


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def all_gather(items: list) -> list:
    """Every rank's list, concatenated in rank order (the same list on every rank); the list itself with one
    process. For small Python data: verified samples, labelled answers."""
    if not dist.is_initialized():
        return items
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def all_sum(x: float | torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a number (a tensor on CPU for gloo); the number itself with one process."""
    t = torch.as_tensor(x, dtype=torch.float64).clone()
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 samples with `seed` (a 1-process run is unchanged), every other rank with its own stream."""
    return seed + rank * 0x9E3779B97F4A


def wrap(model, world: int, heads: tuple[str, ...] = ()):
    """The model to train: the heads the stage does not train ("value", "reward" not in `heads`) frozen, then DDP
    when world > 1. DDP's fast path (find_unused_parameters=False) needs every parameter that requires a gradient to
    get one in every backward. Call it after the optimizer is built (its state keeps its shape for --resume). Every
    training forward must call the wrapper (GPT.forward(..., return_hidden=True) for the hidden states)."""
    for name in ("value", "reward"):
        getattr(model, f"{name}_head").requires_grad_(name in heads)
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model)


def unwrap(model):
    """The GPT inside a DDP wrapper (its heads, its config); the model itself otherwise."""
    return getattr(model, "module", model)


def all_mean(row: dict) -> dict:
    """Every number of a log row averaged over ranks in one all-reduce (NaN entries, e.g. "length of wrong answers"
    on a rank with none, are left out of their mean). The row itself with one process."""
    if not dist.is_initialized():
        return row
    v = torch.tensor([float(x) for x in row.values()], dtype=torch.float64)
    ok = ~torch.isnan(v)
    s = torch.stack([torch.where(ok, v, torch.zeros_like(v)), ok.double()])
    dist.all_reduce(s)
    means = (s[0] / s[1]).tolist()                                 # 0 / 0 = NaN where every rank had NaN
    return {k: (round(m) if isinstance(x, int) else m) for (k, x), m in zip(row.items(), means)}


def mean(x: float) -> float:
    """One number averaged over ranks (all_mean of a single entry)."""
    return all_mean({"x": x})["x"]


def broadcast(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor on every rank (a CPU tensor; gloo); the tensor itself with one process."""
    if dist.is_initialized():
        dist.broadcast(t, 0)
    return t


def token_scale(mask) -> float:
    """The factor that turns this rank's token-mean into its share of the token-mean over ALL ranks' tokens:
    local tokens x world / all tokens (DDP then averages over ranks). 1 with one process. `mask`: the mask of the
    averaged terms, or their count."""
    world = world_size()
    if world == 1:
        return 1.0
    n = float(mask.sum()) if torch.is_tensor(mask) else float(mask)
    return n * world / max(all_sum(n).item(), 1.0)


def masked_whiten(x, mask, eps: float = 1e-8):
    """rl.masked_whiten with the mean and variance of the masked entries on ALL ranks (one all-reduce)."""
    if world_size() == 1:
        return rl.masked_whiten(x, mask, eps=eps)
    s = all_sum(torch.stack([rl.masked_sum(x, mask), rl.masked_sum(x * x, mask), mask.sum()]).cpu())
    mean = s[0] / s[2]
    var = (s[1] - s[2] * mean ** 2) / (s[2] - 1).clamp(min=1)      # unbiased, as rl.masked_var
    return (x - mean.to(x)) * torch.rsqrt(var.to(x) + eps) * mask


def cleanup():
    """Leave the process group together: a rank that tears gloo down while rank 0 is still evaluating can abort
    ("terminate called without an active exception"), so every rank waits for the others first."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
