"""Distillation: a strong teacher into a smaller student (train_distill.py).

Three ways to move what the teacher knows (p = the student's next-token distribution, q = the teacher's):

  token-level     on given text (reference solutions, or the teacher's own samples), match q at every token:
                  L = T^2 * mean_t D(q_t, p_t), D = forward KL / reverse KL / JSD(beta)      (Hinton et al. 2015)
  sequence-level  sample from the teacher, keep what is verified correct (rollouts.keep_verified), fine-tune on it with
                  cross-entropy: the student imitates whole answers, not distributions       (Kim & Rush 2016)
  on-policy       the *student* samples, the teacher scores every token of those samples with the same token-level
                  loss: the student is corrected on the states it actually visits  (GKD, Agarwal et al. 2024)

The divergences come from kernels.kl_div: the fused Triton kernel on CUDA, the memory-lean chunked twin elsewhere;
the (tokens x vocabulary) log-softmax of either model is never kept for backward.
"""
from __future__ import annotations

from kernels.kl import kl_div
from nanoreason.config import ConfigError


def distill_loss(student_logits, teacher_logits, mask, kind: str = "forward", temperature: float = 1.0,
                 beta: float = 0.5, backend: str = "auto"):
    """Mean per-token divergence over the tokens where mask is 1, scaled by T^2 (Hinton et al. 2015: the gradient of a
    softened KL shrinks as 1/T^2; the factor keeps its size as T changes). Gradient to the student only.
    # L = T^2 * sum_t m_t D_kind(teacher_t || student_t) / sum_t m_t
    student_logits, teacher_logits (B, T, V); mask (B, T)."""
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"distill_loss: student logits {tuple(student_logits.shape)} and teacher logits "
                          f"{tuple(teacher_logits.shape)} differ in shape (the same tokenizer is needed)")
    keep = mask.bool()
    if not keep.any():
        return student_logits.sum() * 0.0                                  # nothing to learn; still a graph
    d = kl_div(student_logits[keep], teacher_logits[keep].detach(), kind, temperature, beta, backend)   # (N,)
    return temperature ** 2 * d.mean()


def curriculum_max_steps(it: int, iters: int, min_steps: int, max_steps: int) -> int:
    """Curriculum by difficulty: the most reasoning steps a problem may have at iteration `it`, rising linearly from
    min_steps to max_steps over the first half of training, then all problems."""
    frac = min(1.0, it / max(1, iters // 2))
    return min_steps + round(frac * (max_steps - min_steps))
