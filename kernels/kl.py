"""Per-token divergences between a student and a frozen teacher, from raw logits (for distillation, issue 7).

    kl_div(student_logits, teacher_logits, kind, temperature=1.0, beta=0.5, backend="auto")   # (..., V) x2 -> (...)

With p = softmax(student / T) and q = softmax(teacher / T):
    "forward"  KL(q || p) = sum_v q_v (log q_v - log p_v)          (mode-covering; classic distillation, Hinton 2015)
    "reverse"  KL(p || q) = sum_v p_v (log p_v - log q_v)          (mode-seeking; MiniLLM, Gu et al. 2024)
    "jsd"      beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q   (generalised JSD, GKD 2024)
Gradients flow to the student only. Backends: "torch" (the specification, autograd through log_softmax),
"chunked" (the same, rows in blocks, each block recomputed in backward: only the inputs are kept), "auto" (chunked).
The fused Triton version is not written yet: backend="triton" says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

KINDS = ("forward", "reverse", "jsd")


def _divergence(s, t, kind: str, temperature: float, beta: float):
    dt = torch.float64 if s.dtype == torch.float64 else torch.float32
    logp = F.log_softmax(s.to(dt) / temperature, dim=-1)
    logq = F.log_softmax(t.detach().to(dt) / temperature, dim=-1)
    if kind == "forward":
        return (logq.exp() * (logq - logp)).sum(-1)
    if kind == "reverse":
        return (logp.exp() * (logp - logq)).sum(-1)
    logm = torch.logsumexp(torch.stack([logp + torch.log(torch.tensor(beta, dtype=dt)),
                                        logq + torch.log(torch.tensor(1 - beta, dtype=dt))]), dim=0)
    return beta * (logp.exp() * (logp - logm)).sum(-1) + (1 - beta) * (logq.exp() * (logq - logm)).sum(-1)


def kl_div(student_logits, teacher_logits, kind: str = "forward", temperature: float = 1.0, beta: float = 0.5,
           backend: str = "auto", chunk: int | None = None):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if backend not in ("auto", "torch", "chunked", "triton"):
        raise ValueError(f"unknown backend {backend!r}; choose from auto, torch, chunked, triton")
    if backend == "triton":
        raise NotImplementedError("the fused Triton KL kernel is not written yet; use backend='chunked' or 'torch'")
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
    if backend == "torch":
        return _divergence(student_logits, teacher_logits, kind, temperature, beta)
    V = student_logits.shape[-1]
    s, t = student_logits.reshape(-1, V), teacher_logits.reshape(-1, V)
    chunk = chunk or max(1, 2**21 // V)
    parts = [checkpoint(_divergence, s[i:i + chunk], t[i:i + chunk], kind, temperature, beta, use_reentrant=False)
             for i in range(0, s.shape[0], chunk)]
    return torch.cat(parts).view(student_logits.shape[:-1])
