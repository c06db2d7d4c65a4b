"""Triton kernels for `kernels.kl_div`: per-row KL / JSD between student and teacher logits, gradient to the student.
Imported lazily (see triton_logprobs.py for the interpreter note). KIND: 0 forward KL(q||p), 1 reverse KL(p||q),
2 generalised JSD(beta); p = softmax(s / T) (student), q = softmax(t / T) (teacher).

Each program handles BLOCK_N rows and walks the vocabulary in BLOCK_V tiles:
  forward : pass 1, online max / sum-exp of both rows -> lse_s, lse_t;  pass 2, the divergence from the normalised
            log-probs, plus AUX = KL(p||q) (reverse) or KL(p||m) (jsd), which the backward needs.  Saves 3 floats a row.
  backward: recompute log p, log q tile by tile and write dKL/ds into a fresh buffer:
            forward  (p - q) / T                     reverse  p (log p - log q - KL) / T
            jsd      beta p (log p - log m - KL(p||m)) / T,   m = beta p + (1 - beta) q
"""
import triton
import triton.language as tl

from kernels.triton_logprobs import _lse_update


@triton.jit
def _tile(S, T, base, cols, row_ok, V, inv_t, F64: tl.constexpr):
    """One (BLOCK_N, BLOCK_V) tile of both logit rows, scaled by 1/T, -inf outside the matrix."""
    mask = row_ok[:, None] & (cols[None, :] < V)
    zs = tl.load(S + base[:, None] + cols[None, :], mask=mask, other=float("-inf"))
    zt = tl.load(T + base[:, None] + cols[None, :], mask=mask, other=float("-inf"))
    zs = (zs.to(tl.float64) if F64 else zs.to(tl.float32)) * inv_t     # one return: a compile for a GPU rejects
    zt = (zt.to(tl.float64) if F64 else zt.to(tl.float32)) * inv_t     # two of different types (the interpreter
    return zs, zt, mask                                                 # does not)


@triton.jit
def _log_m(logp, logq, log_beta, log_1mbeta):
    """log(beta p + (1 - beta) q), stable; -inf where both are 0 (the callers mask those out)."""
    a = logp + log_beta
    b = logq + log_1mbeta
    mx = tl.maximum(a, b)
    mx_safe = tl.where(mx == float("-inf"), 0.0, mx)
    return mx_safe + tl.log(tl.exp(a - mx_safe) + tl.exp(b - mx_safe))


@triton.jit
def _kl_fwd(S, T, OUT, LSE_S, LSE_T, AUX, N, V, stride, inv_t, beta, log_beta, log_1mbeta,
            KIND: tl.constexpr, F64: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    base = rows.to(tl.int64) * stride
    if F64:
        ms = tl.full([BLOCK_N], float("-inf"), tl.float64)
        ss = tl.zeros([BLOCK_N], tl.float64)
    else:
        ms = tl.full([BLOCK_N], float("-inf"), tl.float32)
        ss = tl.zeros([BLOCK_N], tl.float32)
    mt = ms
    st = ss
    for v0 in range(0, V, BLOCK_V):                                   # pass 1: both log-sum-exps, online
        zs, zt, mask = _tile(S, T, base, v0 + tl.arange(0, BLOCK_V), row_ok, V, inv_t, F64)
        ms, ss = _lse_update(ms, ss, zs)
        mt, st = _lse_update(mt, st, zt)
    lse_s = tl.where(ms == float("-inf"), 0.0, ms) + tl.log(tl.where(row_ok, ss, 1.0))
    lse_t = tl.where(mt == float("-inf"), 0.0, mt) + tl.log(tl.where(row_ok, st, 1.0))
    acc = ss * 0.0                                                    # the divergence
    aux = ss * 0.0                                                    # KL(p||m) for jsd
    for v0 in range(0, V, BLOCK_V):                                   # pass 2: the divergence, normalised
        zs, zt, mask = _tile(S, T, base, v0 + tl.arange(0, BLOCK_V), row_ok, V, inv_t, F64)
        logp = zs - lse_s[:, None]
        logq = zt - lse_t[:, None]
        p = tl.exp(logp)
        q = tl.exp(logq)
        if KIND == 0:
            acc += tl.sum(tl.where(q > 0, q * (logq - logp), 0.0), 1)
        elif KIND == 1:
            acc += tl.sum(tl.where(p > 0, p * (logp - logq), 0.0), 1)
        else:
            logm = _log_m(logp, logq, log_beta, log_1mbeta)
            kl_pm = tl.sum(tl.where(p > 0, p * (logp - logm), 0.0), 1)
            aux += kl_pm
            acc += beta * kl_pm + (1 - beta) * tl.sum(tl.where(q > 0, q * (logq - logm), 0.0), 1)
    if KIND == 1:
        aux = acc
    tl.store(OUT + rows, acc, mask=row_ok)
    tl.store(LSE_S + rows, lse_s, mask=row_ok)
    tl.store(LSE_T + rows, lse_t, mask=row_ok)
    tl.store(AUX + rows, aux, mask=row_ok)


@triton.jit
def _kl_bwd(S, T, G, LSE_S, LSE_T, AUX, DS, N, V, stride, inv_t, beta, log_beta, log_1mbeta,
            KIND: tl.constexpr, F64: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    base = rows.to(tl.int64) * stride
    g = tl.load(G + rows, mask=row_ok, other=0.0)
    g = (g.to(tl.float64) if F64 else g.to(tl.float32)) * inv_t
    lse_s = tl.load(LSE_S + rows, mask=row_ok, other=0.0)
    lse_t = tl.load(LSE_T + rows, mask=row_ok, other=0.0)
    aux = tl.load(AUX + rows, mask=row_ok, other=0.0)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        zs, zt, mask = _tile(S, T, base, cols, row_ok, V, inv_t, F64)
        logp = zs - lse_s[:, None]
        logq = zt - lse_t[:, None]
        p = tl.exp(logp)
        if KIND == 0:
            dz = p - tl.exp(logq)
        elif KIND == 1:
            dz = tl.where(p > 0, p * (logp - logq - aux[:, None]), 0.0)
        else:
            logm = _log_m(logp, logq, log_beta, log_1mbeta)
            dz = beta * tl.where(p > 0, p * (logp - logm - aux[:, None]), 0.0)
        ds = g[:, None] * dz
        tl.store(DS + base[:, None] + cols[None, :], ds.to(DS.dtype.element_ty), mask=mask)
