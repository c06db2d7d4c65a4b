"""Log-probability of target tokens without materialising log_softmax: logp[n] = x[n, y[n]] / T - logsumexp(x[n] / T).

    logprobs(logits, targets, temperature=1.0, backend="auto", ignore_index=-100)   # (..., V), (...) -> (...) fp32
    logprobs(..., with_entropy=True)                 # -> (logp, H), H = -sum_v p_v log p_v of softmax(logits / T)
    linear_logprobs(hidden, weight, targets, ...)    # (..., C), (V, C), (...): the same of hidden @ weight.T, and
                                                     # "chunked" never makes the (N, V) logits (see its docstring)

backends
  "torch"   the readable specification: log_softmax + gather (materialises the (N, V) log-probs and their gradient)
  "chunked" the same maths over `chunk` rows at a time, saving only the LSE per row; the gradient
            (onehot - softmax(x/T)) / T is recomputed in backward into a fresh buffer (the logits are never written)
  "triton"  the fused kernels of kernels/triton_logprobs.py (CUDA, or the CPU interpreter under TRITON_INTERPRET=1)
  "auto"    torch while the logits are small (at most AUTO_TORCH_MAX = 2**22 elements, 16 MiB in fp32: there the
            plain twin is as fast or faster, measured with bench/kernel_speed.py), else triton on CUDA tensors and
            chunked elsewhere
Targets equal to `ignore_index` get log-prob 0 and no gradient. float64 inputs are computed in float64 (gradcheck).
"""
from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "chunked", "triton")
AUTO_TORCH_MAX = 2**22        # logits elements up to which "auto" is the readable log_softmax + gather


def auto_backend(is_cuda: bool, n_elements: int) -> str:
    """What backend="auto" runs for (N, V) logits of `n_elements` = N * V."""
    if n_elements <= AUTO_TORCH_MAX:
        return "torch"
    return "triton" if is_cuda else "chunked"


def _check(logits, targets, temperature, backend, ignore_index, name="logits", V=None):
    """`logits` (..., V), or the hidden states (..., C) of `linear_logprobs` (name="hidden", V from the weight)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if not torch.is_floating_point(logits):
        raise TypeError(f"{name} must be a floating-point tensor, got {logits.dtype}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"{name} {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match: {name} must "
                         f"be targets.shape + ({'V' if name == 'logits' else 'C'},)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    V = V or logits.shape[-1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= V))
    if bad.any():
        raise ValueError(f"target {int(targets[bad][0])} is out of range for a vocabulary of {V}")


def _compute_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def logprobs_torch(logits, targets, temperature: float = 1.0, ignore_index: int = -100, with_entropy: bool = False):
    """The specification, in eager PyTorch."""
    valid = targets != ignore_index
    logp = F.log_softmax(logits.to(_compute_dtype(logits)) / temperature, dim=-1)     # (N, V)
    out = logp.gather(-1, torch.where(valid, targets, 0).long().unsqueeze(-1)).squeeze(-1)
    out = torch.where(valid, out, torch.zeros_like(out))
    return (out, -_entropy_terms(logp.exp(), logp).sum(-1)) if with_entropy else out


def _entropy_terms(p, logp):
    """p_v log p_v with 0 log 0 = 0 (no NaN where a logit is -inf, in the value or in its gradient)."""
    return p * torch.where(p > 0, logp, 0.0)


def _block_forward(z, y, valid, T: float, with_entropy: bool):
    """One block of rows of logits z (n, V), in the compute dtype -> (LSE of z/T, log-prob of the target, entropy
    or None), each (n,). Only these per-row numbers survive the block."""
    zt = z if T == 1.0 else z / T
    lse = torch.logsumexp(zt, dim=-1)                                   # (n,)
    out = torch.where(valid, zt.gather(-1, y[:, None]).squeeze(-1) - lse, 0.0)
    if not with_entropy:
        return lse, out, None
    logp = zt - lse[:, None]                                            # (n, V), one temporary
    return lse, out, -_entropy_terms(logp.exp(), logp).sum(-1)         # H = -sum_v p_v log p_v


def _block_grad(z, y, lse, ent, g, gH, T: float):
    """d/dz of sum_n (g_n logp_n[y_n] + gH_n H_n) for one block of logits z (n, V), recomputed from the saved LSE:
        d logp[y] / dz_v = (onehot_v - p_v) / T,    d H / dz_v = -p_v (log p_v + H) / T.
    `g` is already 0 on ignored rows; `gH` is None when no entropy gradient flows. Returns a fresh (n, V) buffer."""
    logp = (z if T == 1.0 else z / T) - lse[:, None]                    # (n, V): a fresh buffer (z is not written)
    p = logp.exp()
    if gH is None:
        dz = p.mul_(-g[:, None])                                        # -g p
    else:
        dz = (p * (g + gH * ent)[:, None]).neg_().sub_(gH[:, None] * _entropy_terms(p, logp))
    dz.scatter_add_(-1, y[:, None], g[:, None])                         # + g onehot
    return dz if T == 1.0 else dz.div_(T)


def _forward_blocks(block_logits, N: int, y, ignore_index: int, T: float, chunk: int, with_entropy: bool, dt):
    """_block_forward over blocks of `chunk` rows; block_logits(rows) makes one block's logits (n, V) in dtype dt.
    -> (target ids with ignored ones set to 0, valid mask, LSE, log-probs, entropy (unset without with_entropy))."""
    valid = y != ignore_index
    safe_y = torch.where(valid, y, 0).long()
    lse, out, ent = (torch.empty(N, dtype=dt, device=y.device) for _ in range(3))
    for i in range(0, N, chunk):                                        # one block of rows at a time
        s = slice(i, i + chunk)
        lse[s], out[s], e = _block_forward(block_logits(s), safe_y[s], valid[s], T, with_entropy)
        if with_entropy:
            ent[s] = e
    return safe_y, valid, lse, out, ent


def _grad_blocks(block_logits, y, valid, lse, ent, g, gH, T: float, chunk: int):
    """The backward twin of _forward_blocks: (rows, dz) for each block of `chunk` rows, dz = _block_grad of the
    logits block_logits(rows) remade in the compute dtype. `g`, `gH`: the incoming gradients (gH None: no entropy)."""
    g = torch.where(valid, g.to(lse.dtype), 0.0)
    gH = None if gH is None else gH.to(lse.dtype)
    for i in range(0, lse.shape[0], chunk):
        s = slice(i, i + chunk)
        yield s, _block_grad(block_logits(s), y[s], lse[s], ent[s], g[s], None if gH is None else gH[s], T)


class _Chunked(torch.autograd.Function):
    """logprobs (and entropy) from logits x (N, V), `chunk` rows at a time; saves only the LSE (and H) per row."""
    @staticmethod
    def forward(ctx, x, y, temperature, ignore_index, chunk, with_entropy):    # x (N, V), y (N,)
        dt = _compute_dtype(x)
        safe_y, valid, lse, out, ent = _forward_blocks(lambda s: x[s].to(dt), x.shape[0], y, ignore_index,
                                                       temperature, chunk, with_entropy, dt)
        ctx.save_for_backward(x, safe_y, valid, lse, ent)
        ctx.temperature, ctx.chunk = temperature, chunk
        return (out, ent) if with_entropy else out

    @staticmethod
    def backward(ctx, g, gH=None):
        x, y, valid, lse, ent = ctx.saved_tensors
        dx = torch.empty_like(x)                                        # fresh buffer: the logits stay untouched
        for s, dz in _grad_blocks(lambda s: x[s].to(lse.dtype), y, valid, lse, ent, g, gH, ctx.temperature,
                                  ctx.chunk):
            dx[s] = dz
        return dx, None, None, None, None, None


class _LinearChunked(torch.autograd.Function):
    """logprobs (and entropy) of logits h @ w.T that never exist whole: each block of rows computes its logits,
    keeps the LSE (and H), and drops them; backward recomputes them block by block (one more matmul) and returns
    dh = dz @ w and dw = sum over blocks of dz.T @ h (Liger-Kernel's fused linear cross-entropy, per token)."""
    @staticmethod
    def forward(ctx, h, w, y, temperature, ignore_index, chunk, with_entropy):  # h (N, C), w (V, C), y (N,)
        dt, dev = _compute_dtype(h), h.device.type                     # the matmul's dtype: bf16 under autocast;
        ctx.mm_dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)   # backward remakes the
                        else torch.promote_types(h.dtype, w.dtype))                      # logits exactly as made here
        safe_y, valid, lse, out, ent = _forward_blocks(
            lambda s: (h[s] @ w.t()).to(dt), h.shape[0], y, ignore_index, temperature, chunk, with_entropy, dt)
        ctx.save_for_backward(h, w, safe_y, valid, lse, ent)
        ctx.temperature, ctx.chunk = temperature, chunk
        return (out, ent) if with_entropy else out

    @staticmethod
    def backward(ctx, g, gH=None):
        h, w, y, valid, lse, ent = ctx.saved_tensors
        dt, mt = lse.dtype, ctx.mm_dtype
        wd = w.to(dt)
        dh = torch.empty(h.shape, dtype=dt, device=h.device)            # (N, C)
        dw = torch.zeros(w.shape, dtype=dt, device=w.device)            # (V, C)

        def remake(rows):                                               # (n, V): this block's logits again
            return (h[rows].to(mt) @ w.t().to(mt)).to(dt)
        for s, dz in _grad_blocks(remake, y, valid, lse, ent, g, gH, ctx.temperature, ctx.chunk):
            dh[s] = dz @ wd
            dw.addmm_(dz.t(), h[s].to(dt))
        return dh.to(h.dtype), dw.to(w.dtype), None, None, None, None, None


class _Triton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, temperature, ignore_index, blocks, with_entropy):
        from kernels import triton_logprobs as k
        N, V = x.shape
        dt = _compute_dtype(x)
        out, lse, ent = (torch.empty(N, dtype=dt, device=x.device) for _ in range(3))
        bn, bv, nw = blocks
        k._fwd[(triton_cdiv(N, bn),)](x, y, out, lse, ent, N, V, x.stride(0), 1.0 / temperature, ignore_index,
                                      F64=dt == torch.float64, ENTROPY=with_entropy, BLOCK_N=bn, BLOCK_V=bv,
                                      num_warps=nw)
        ctx.save_for_backward(x, y, lse, ent)
        ctx.args = (temperature, ignore_index, blocks, with_entropy)
        return (out, ent) if with_entropy else out

    @staticmethod
    def backward(ctx, g, gH=None):
        from kernels import triton_logprobs as k
        x, y, lse, ent = ctx.saved_tensors
        temperature, ignore_index, (bn, bv, nw), with_entropy = ctx.args
        N, V = x.shape
        dx = torch.empty_like(x)                                        # fresh buffer: never write the logits
        gH = gH.contiguous() if with_entropy else g                     # (unread without ENTROPY)
        k._bwd[(triton_cdiv(N, bn),)](x, y, g.contiguous(), lse, dx, gH, ent, N, V, x.stride(0), 1.0 / temperature,
                                      ignore_index, F64=lse.dtype == torch.float64, ENTROPY=with_entropy,
                                      BLOCK_N=bn, BLOCK_V=bv, num_warps=nw)
        return dx, None, None, None, None, None


def triton_ready(x) -> bool:
    """Raise unless the Triton kernels can run on `x`; True when they will run on the CPU interpreter."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if not x.is_cuda and not interpreted:
        raise RuntimeError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before the kernels are "
                           "first used (the CPU interpreter); use backend='chunked' or 'torch' on CPU")
    require_triton((3, 0), "the Triton kernels")
    return interpreted


@functools.cache
def require_triton(minimum: tuple[int, int], feature: str) -> None:
    """One line when the installed Triton is older than `minimum` for `feature` (tested on Triton 3.9). Checked once
    per process: the kernels' launches call it."""
    import triton
    have = tuple(int(p) for p in triton.__version__.split(".")[:2] if p.isdigit())
    if have < minimum:
        raise RuntimeError(f"{feature} need triton >= {'.'.join(map(str, minimum))}; this machine has triton "
                           f"{triton.__version__} (pip install -U triton)")


def triton_blocks(x, V: int, block_n: int | None, block_v: int | None) -> tuple[int, int, int]:
    """(rows, vocabulary columns, warps) of one Triton program for logits `x` with V columns: `default_tile` unless
    sizes are given, which must be powers of 2. Raises first if the kernels cannot run on `x`."""
    f64 = x.dtype == torch.float64
    bn, bv = default_tile(V, f64, interpreted=triton_ready(x))
    bn, bv = block_n or bn, block_v or bv
    for name, b in (("block_n", bn), ("block_v", bv)):
        if b & (b - 1):
            raise ValueError(f"{name} must be a power of 2, got {b}")
    return bn, bv, num_warps(bn, bv, f64)


def default_tile(V: int, f64: bool, interpreted: bool) -> tuple[int, int]:
    """(rows, columns) of a program for a vocabulary of V. On a GPU: one row and up to 4096 columns (2048 in fp64,
    which holds half as many values in the registers); with `num_warps`, 16 fp32 or 8 fp64 values a thread, no spill
    on sm_80 or sm_90 (`python bench/kernel_compile.py`). On the interpreter: 4 rows, up to 1024 columns."""
    if interpreted:
        return 4, _pow2_at_most(max(V, 16), 1024)
    return 1, _pow2_at_most(max(V, 16), 2048 if f64 else 4096)


def num_warps(block_n: int, block_v: int, f64: bool = False) -> int:
    """Warps for a (block_n, block_v) tile: 16 fp32 (8 fp64) elements a thread, between 1 and 8 warps."""
    return max(1, min(8, block_n * block_v // (256 if f64 else 512)))


def triton_cdiv(a, b):
    return (a + b - 1) // b


def _pow2_at_most(n: int, cap: int) -> int:
    p = 1
    while p * 2 <= min(n, cap):
        p *= 2
    return p


def _chunk_rows(V: int, chunk: int | None) -> int:
    return chunk or max(1, 2**21 // V)                                  # ~8 MiB of fp32 temporaries per block


def logprobs(logits, targets, temperature: float = 1.0, backend: str = "auto", ignore_index: int = -100,
             chunk: int | None = None, block_n: int | None = None, block_v: int | None = None,
             with_entropy: bool = False):
    """fp32 (fp64 for fp64 inputs) log-probability of each target; shape of `targets`. With `with_entropy`, also
    the entropy of softmax(logits / T) at each position: (logp, H). See the module docstring."""
    _check(logits, targets, temperature, backend, ignore_index)
    return _logprobs(logits, targets, temperature, backend, ignore_index, chunk, block_n, block_v, with_entropy)


def _shaped(out, shape, with_entropy: bool):
    return tuple(o.view(shape) for o in out) if with_entropy else out.view(shape)


def _logprobs(logits, targets, temperature, backend, ignore_index, chunk, block_n, block_v, with_entropy):
    """`logprobs` after its checks (linear_logprobs has made them already, on the hidden states)."""
    if backend == "auto":
        backend = auto_backend(logits.is_cuda, logits.numel())
    if backend == "torch":
        return logprobs_torch(logits, targets, temperature, ignore_index, with_entropy)
    V = logits.shape[-1]
    x, y = logits.reshape(-1, V), targets.reshape(-1)
    if backend == "chunked":
        out = _Chunked.apply(x, y, temperature, ignore_index, _chunk_rows(V, chunk), with_entropy)
    else:
        blocks = triton_blocks(logits, V, block_n, block_v)
        out = _Triton.apply(x.contiguous(), y.long().contiguous(), temperature, ignore_index, blocks, with_entropy)
    return _shaped(out, targets.shape, with_entropy)


def linear_logprobs(hidden, weight, targets, temperature: float = 1.0, backend: str = "auto",
                    ignore_index: int = -100, chunk: int | None = None, with_entropy: bool = False):
    """logprobs(hidden @ weight.T, targets, ...) for hidden (..., C) and an lm_head weight (V, C), with gradients to
    both. "chunked" never holds the (N, V) logits, nor their gradient: each block of rows makes its logits, keeps
    the LSE (and H) and drops them; backward remakes them (one more matmul per block) and accumulates dh and dw.
    "torch" and "triton" compute the logits with one matmul, then call `logprobs`; "auto": see `auto_backend`."""
    if weight.dim() != 2 or hidden.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} do not match: the weight "
                         f"must be (V, C) with C = hidden.shape[-1]")
    _check(hidden, targets, temperature, backend, ignore_index, name="hidden", V=weight.shape[0])
    if backend == "auto":
        backend = auto_backend(hidden.is_cuda, targets.numel() * weight.shape[0])
    if backend != "chunked":                                            # checked once, above
        return _logprobs(hidden @ weight.t(), targets, temperature, backend, ignore_index, chunk, None, None,
                         with_entropy)
    C = hidden.shape[-1]
    out = _LinearChunked.apply(hidden.reshape(-1, C), weight, targets.reshape(-1), temperature, ignore_index,
                               _chunk_rows(weight.shape[0], chunk), with_entropy)
    return _shaped(out, targets.shape, with_entropy)
