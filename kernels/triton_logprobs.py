"""Triton kernels for `kernels.logprobs`. Imported lazily: under TRITON_INTERPRET=1 (set before this import) they
run on the CPU interpreter; otherwise they need a CUDA GPU.

Each program handles a (BLOCK_N rows) x (BLOCK_V vocabulary) tile and walks the vocabulary tile by tile:
  forward : online max / sum-exp (Milakov & Gimelshein 2018) -> LSE per row; logp = x_y / T - LSE.  Saves LSE only.
            With ENTROPY it also carries t = sum exp(z - m) (z - m), so H = log s - t / s (no second pass).
  backward: recompute p = exp(x / T - LSE) tile by tile; dx = g * (onehot(y) - p) / T into a fresh buffer,
            with ENTROPY minus gH * p (log p + H) / T.
"""
import triton
import triton.language as tl


@triton.jit
def _lse_update(m, s, z):
    """One tile of the online log-sum-exp: running max m and sum s (of exp(z - m)) per row, updated with tile z."""
    m_new = tl.maximum(m, tl.max(z, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)              # a row of -inf so far: keep exp() finite
    return m_new, s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe[:, None]), 1)


@triton.jit
def _lse_ent_update(m, s, t, z):
    """_lse_update that also carries t = sum exp(z - m) (z - m): rescaled by exp(m - m_new) and shifted by
    (m - m_new) s when the max grows. Then the entropy is H = log s - t / s, free of large-number cancellation."""
    m_new = tl.maximum(m, tl.max(z, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    a = tl.exp(m - m_safe)
    t = a * (t + tl.where(s > 0, m - m_safe, 0.0) * s)
    zs = z - m_safe[:, None]
    e = tl.exp(zs)
    return m_new, s * a + tl.sum(e, 1), t + tl.sum(e * tl.where(e > 0, zs, 0.0), 1)


@triton.jit
def _fwd(X, Y, OUT, LSE, ENT, N, V, stride, inv_t, ignore_index,
         F64: tl.constexpr, ENTROPY: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    base = rows.to(tl.int64) * stride
    if F64:
        m = tl.full([BLOCK_N], float("-inf"), tl.float64)
        s = tl.zeros([BLOCK_N], tl.float64)
    else:
        m = tl.full([BLOCK_N], float("-inf"), tl.float32)
        s = tl.zeros([BLOCK_N], tl.float32)
    t = s * 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        mask = row_ok[:, None] & (cols[None, :] < V)
        x = tl.load(X + base[:, None] + cols[None, :], mask=mask, other=float("-inf"))
        x = (x.to(tl.float64) if F64 else x.to(tl.float32)) * inv_t
        if ENTROPY:
            m, s, t = _lse_ent_update(m, s, t, x)
        else:
            m, s = _lse_update(m, s, x)
    s = tl.where(row_ok, s, 1.0)                                        # rows past N: keep log() finite
    lse = tl.where(m == float("-inf"), 0.0, m) + tl.log(s)
    if ENTROPY:
        tl.store(ENT + rows, tl.log(s) - t / s, mask=row_ok)
    y = tl.load(Y + rows, mask=row_ok, other=ignore_index)
    valid = row_ok & (y != ignore_index)
    xy = tl.load(X + base + y, mask=valid, other=0.0)
    xy = (xy.to(tl.float64) if F64 else xy.to(tl.float32)) * inv_t
    tl.store(OUT + rows, tl.where(valid, xy - lse, 0.0), mask=row_ok)
    tl.store(LSE + rows, lse, mask=row_ok)


@triton.jit
def _bwd(X, Y, G, LSE, DX, GH, ENT, N, V, stride, inv_t, ignore_index,
         F64: tl.constexpr, ENTROPY: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    base = rows.to(tl.int64) * stride
    y = tl.load(Y + rows, mask=row_ok, other=ignore_index)
    valid = row_ok & (y != ignore_index)
    g = tl.load(G + rows, mask=row_ok, other=0.0)
    g = tl.where(valid, (g.to(tl.float64) if F64 else g.to(tl.float32)) * inv_t, 0.0)
    lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
    if ENTROPY:
        gh = tl.load(GH + rows, mask=row_ok, other=0.0)
        gh = (gh.to(tl.float64) if F64 else gh.to(tl.float32)) * inv_t
        ent = tl.load(ENT + rows, mask=row_ok, other=0.0)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        mask = row_ok[:, None] & (cols[None, :] < V)
        x = tl.load(X + base[:, None] + cols[None, :], mask=mask, other=0.0)
        x = (x.to(tl.float64) if F64 else x.to(tl.float32)) * inv_t
        p = tl.exp(x - lse[:, None])
        onehot = tl.where(cols[None, :] == y[:, None], 1.0, 0.0)
        dx = g[:, None] * (onehot - p)
        if ENTROPY:                                                     # - gH p (log p + H) / T, 0 where p = 0
            dx -= gh[:, None] * p * tl.where(p > 0, x - lse[:, None] + ent[:, None], 0.0)
        tl.store(DX + base[:, None] + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
