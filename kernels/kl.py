"""Per-token divergences between a student and a frozen teacher, from raw logits (for distillation, issue 7).

    kl_div(student_logits, teacher_logits, kind, temperature=1.0, beta=0.5, backend="auto")   # (..., V) x2 -> (...)

With p = softmax(student / T) and q = softmax(teacher / T):
    "forward"  KL(q || p) = sum_v q_v (log q_v - log p_v)          (mode-covering; classic distillation, Hinton 2015)
    "reverse"  KL(p || q) = sum_v p_v (log p_v - log q_v)          (mode-seeking; MiniLLM, Gu et al. 2024)
    "jsd"      beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q   (generalised JSD, GKD 2024)
Gradients flow to the student only. Backends: "torch" (the specification, autograd through log_softmax),
"chunked" (the same, rows in blocks, each block recomputed in backward: only the inputs are kept), "triton" (the
fused kernels of kernels/triton_kl.py: two passes over the vocabulary forward, one backward, 3 floats saved per row;
CUDA, or the CPU interpreter under TRITON_INTERPRET=1), "auto" (as in kernels/logprobs.py: torch for small logits, then triton on CUDA tensors, chunked elsewhere).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from kernels.logprobs import _compute_dtype, auto_backend, triton_blocks, triton_cdiv

KINDS = ("forward", "reverse", "jsd")


def _kl_terms(p, logp, logr):
    """sum_v p_v (log p_v - log r_v), with 0 log 0 = 0 (and no NaN in the gradient where p_v = 0)."""
    ok = p > 0
    return (p * (torch.where(ok, logp, 0.0) - torch.where(ok, logr, 0.0))).sum(-1)


def _divergence(s, t, kind: str, temperature: float, beta: float):
    dt = torch.float64 if s.dtype == torch.float64 else torch.float32
    logp = F.log_softmax(s.to(dt) / temperature, dim=-1)
    logq = F.log_softmax(t.detach().to(dt) / temperature, dim=-1)
    if kind == "forward":
        return _kl_terms(logq.exp(), logq, logp)
    if kind == "reverse":
        return _kl_terms(logp.exp(), logp, logq)
    logm = torch.logaddexp(logp + math.log(beta), logq + math.log1p(-beta))
    return beta * _kl_terms(logp.exp(), logp, logm) + (1 - beta) * _kl_terms(logq.exp(), logq, logm)


class _TritonKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, t, kind, temperature, beta, blocks):                # s, t (N, V)
        from kernels import triton_kl as k
        N, V = s.shape
        dt = _compute_dtype(s)
        out, lse_s, lse_t, aux = (torch.empty(N, dtype=dt, device=s.device) for _ in range(4))
        scal = (1.0 / temperature, beta, *((math.log(beta), math.log1p(-beta)) if 0 < beta < 1 else (0.0, 0.0)))
        k._kl_fwd[(triton_cdiv(N, blocks[0]),)](s, t, out, lse_s, lse_t, aux, N, V, s.stride(0), *scal,
                                                KIND=KINDS.index(kind), F64=dt == torch.float64,
                                                BLOCK_N=blocks[0], BLOCK_V=blocks[1], num_warps=blocks[2])
        ctx.save_for_backward(s, t, lse_s, lse_t, aux)
        ctx.args = (kind, scal, blocks)
        return out

    @staticmethod
    def backward(ctx, g):
        from kernels import triton_kl as k
        s, t, lse_s, lse_t, aux = ctx.saved_tensors
        kind, scal, (bn, bv, nw) = ctx.args
        N, V = s.shape
        ds = torch.empty_like(s)                                           # fresh buffer: inputs stay untouched
        k._kl_bwd[(triton_cdiv(N, bn),)](s, t, g.contiguous(), lse_s, lse_t, aux, ds, N, V, s.stride(0), *scal,
                                         KIND=KINDS.index(kind), F64=aux.dtype == torch.float64,
                                         BLOCK_N=bn, BLOCK_V=bv, num_warps=nw)
        return ds, None, None, None, None, None


def kl_div(student_logits, teacher_logits, kind: str = "forward", temperature: float = 1.0, beta: float = 0.5,
           backend: str = "auto", chunk: int | None = None, block_n: int | None = None, block_v: int | None = None):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if backend not in ("auto", "torch", "chunked", "triton"):
        raise ValueError(f"unknown backend {backend!r}; choose from auto, torch, chunked, triton")
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not torch.is_floating_point(x):
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if kind == "jsd" and not 0 < beta < 1:
        raise ValueError(f"jsd needs 0 < beta < 1, got {beta}")
    if backend == "auto":
        backend = auto_backend(student_logits.is_cuda, student_logits.numel())
    if backend == "torch":
        return _divergence(student_logits, teacher_logits, kind, temperature, beta)
    V = student_logits.shape[-1]
    s, t = student_logits.reshape(-1, V), teacher_logits.reshape(-1, V)
    if backend == "triton":
        blocks = triton_blocks(student_logits, V, block_n, block_v)
        out = _TritonKL.apply(s.contiguous(), t.detach().contiguous(), kind, temperature, beta, blocks)
        return out.view(student_logits.shape[:-1])
    chunk = chunk or max(1, 2**21 // V)
    parts = [checkpoint(_divergence, s[i:i + chunk], t[i:i + chunk], kind, temperature, beta, use_reentrant=False)
             for i in range(0, s.shape[0], chunk)]
    return torch.cat(parts).view(student_logits.shape[:-1])
