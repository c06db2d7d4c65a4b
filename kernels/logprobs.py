"""Log-probability of target tokens without materialising log_softmax: logp[n] = x[n, y[n]] / T - logsumexp(x[n] / T).

    logprobs(logits, targets, temperature=1.0, backend="auto", ignore_index=-100)   # (..., V), (...) -> (...) fp32

backends
  "torch"   the readable specification: log_softmax + gather (materialises the (N, V) log-probs and their gradient)
  "chunked" the same maths over `chunk` rows at a time, saving only the LSE per row; the gradient
            (onehot - softmax(x/T)) / T is recomputed in backward into a fresh buffer (the logits are never written)
  "triton"  the fused kernels of kernels/triton_logprobs.py (CUDA, or the CPU interpreter under TRITON_INTERPRET=1)
  "auto"    triton on CUDA tensors, chunked elsewhere
Targets equal to `ignore_index` get log-prob 0 and no gradient. float64 inputs are computed in float64 (gradcheck).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "chunked", "triton")


def _check(logits, targets, temperature, backend, ignore_index):
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match: logits must be "
                         f"targets.shape + (V,)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    V = logits.shape[-1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= V))
    if bad.any():
        raise ValueError(f"target {int(targets[bad][0])} is out of range for a vocabulary of {V}")


def _compute_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def logprobs_torch(logits, targets, temperature: float = 1.0, ignore_index: int = -100):
    """The specification, in eager PyTorch."""
    valid = targets != ignore_index
    logp = F.log_softmax(logits.to(_compute_dtype(logits)) / temperature, dim=-1)
    out = logp.gather(-1, torch.where(valid, targets, 0).long().unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, out, torch.zeros_like(out))


class _Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, temperature, ignore_index, chunk):          # x (N, V), y (N,)
        dt = _compute_dtype(x)
        lse = torch.empty(x.shape[0], dtype=dt, device=x.device)
        valid = y != ignore_index
        safe_y = torch.where(valid, y, 0).long()
        for i in range(0, x.shape[0], chunk):                           # one block of rows at a time
            z = x[i:i + chunk].to(dt)
            lse[i:i + chunk] = torch.logsumexp(z if temperature == 1.0 else z / temperature, dim=-1)
        xy = x.gather(-1, safe_y[:, None]).squeeze(-1).to(dt) / temperature
        out = torch.where(valid, xy - lse, torch.zeros_like(lse))
        ctx.save_for_backward(x, safe_y, valid, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        return out

    @staticmethod
    def backward(ctx, g):
        x, y, valid, lse = ctx.saved_tensors
        T, chunk = ctx.temperature, ctx.chunk
        dx = torch.empty_like(x)                                        # fresh buffer: the logits stay untouched
        gs = torch.where(valid, g.to(lse.dtype), torch.zeros_like(lse)) / T
        for i in range(0, x.shape[0], chunk):
            p = x[i:i + chunk].to(lse.dtype, copy=True)                 # one temporary per block, then in place:
            if T != 1.0:
                p.div_(T)
            p.sub_(lse[i:i + chunk, None]).exp_().neg_()                # -softmax(x / T)
            p.scatter_add_(-1, y[i:i + chunk, None], torch.ones_like(p[:, :1]))   # onehot - softmax
            p.mul_(gs[i:i + chunk, None])
            dx[i:i + chunk] = p
        return dx, None, None, None, None


class _Triton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, temperature, ignore_index, blocks):
        from kernels import triton_logprobs as k
        N, V = x.shape
        dt = _compute_dtype(x)
        out = torch.empty(N, dtype=dt, device=x.device)
        lse = torch.empty(N, dtype=dt, device=x.device)
        bn, bv = blocks
        k._fwd[(triton_cdiv(N, bn),)](x, y, out, lse, N, V, x.stride(0), 1.0 / temperature, ignore_index,
                                      F64=dt == torch.float64, BLOCK_N=bn, BLOCK_V=bv)
        ctx.save_for_backward(x, y, lse)
        ctx.args = (temperature, ignore_index, blocks)
        return out

    @staticmethod
    def backward(ctx, g):
        from kernels import triton_logprobs as k
        x, y, lse = ctx.saved_tensors
        temperature, ignore_index, (bn, bv) = ctx.args
        N, V = x.shape
        dx = torch.empty_like(x)                                        # fresh buffer: never write the logits
        k._bwd[(triton_cdiv(N, bn),)](x, y, g.contiguous(), lse, dx, N, V, x.stride(0), 1.0 / temperature,
                                      ignore_index, F64=lse.dtype == torch.float64, BLOCK_N=bn, BLOCK_V=bv)
        return dx, None, None, None, None


def triton_ready(x) -> bool:
    """Raise unless the Triton kernels can run on `x`; True when they will run on the CPU interpreter."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if not x.is_cuda and not interpreted:
        raise RuntimeError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before the kernels are "
                           "first used (the CPU interpreter); use backend='chunked' or 'torch' on CPU")
    return interpreted


def triton_blocks(x, V: int, block_n: int | None, block_v: int | None) -> tuple[int, int]:
    """(rows, vocabulary columns) of one Triton tile for logits `x` with V columns: small tiles on the interpreter,
    larger on a GPU; explicit sizes must be powers of 2. Raises first if the kernels cannot run on `x`."""
    interpreted = triton_ready(x)
    bn = block_n or (4 if interpreted else 8)
    bv = block_v or _pow2_at_most(max(V, 16), 1024 if interpreted else 4096)
    for name, b in (("block_n", bn), ("block_v", bv)):
        if b & (b - 1):
            raise ValueError(f"{name} must be a power of 2, got {b}")
    return bn, bv


def triton_cdiv(a, b):
    return (a + b - 1) // b


def _pow2_at_most(n: int, cap: int) -> int:
    p = 1
    while p * 2 <= min(n, cap):
        p *= 2
    return p


def logprobs(logits, targets, temperature: float = 1.0, backend: str = "auto", ignore_index: int = -100,
             chunk: int | None = None, block_n: int | None = None, block_v: int | None = None):
    """fp32 (fp64 for fp64 inputs) log-probability of each target; shape of `targets`. See the module docstring."""
    _check(logits, targets, temperature, backend, ignore_index)
    if backend == "auto":
        backend = "triton" if logits.is_cuda else "chunked"
    if backend == "torch":
        return logprobs_torch(logits, targets, temperature, ignore_index)
    V = logits.shape[-1]
    x, y = logits.reshape(-1, V), targets.reshape(-1)
    if backend == "chunked":
        chunk = chunk or max(1, 2**21 // V)                             # ~8 MiB of fp32 temporaries per block
        return _Chunked.apply(x, y, temperature, ignore_index, chunk).view(targets.shape)
    blocks = triton_blocks(logits, V, block_n, block_v)
    return _Triton.apply(x.contiguous(), y.contiguous(), temperature, ignore_index, blocks).view(targets.shape)
