"""kernels.kl_div against slow per-row formulas and float64 gradcheck."""
import math

import pytest
import torch

from kernels.kl import kl_div


def slow(s, t, kind, T, beta):
    out = []
    for srow, trow in zip(s.double().tolist(), t.double().tolist()):
        zs = [v / T for v in srow]
        zt = [v / T for v in trow]
        ls, lt = math.log(sum(math.exp(v) for v in zs)), math.log(sum(math.exp(v) for v in zt))
        p = [math.exp(v - ls) for v in zs]
        q = [math.exp(v - lt) for v in zt]
        if kind == "forward":
            out.append(sum(qi * math.log(qi / pi) for pi, qi in zip(p, q)))
        elif kind == "reverse":
            out.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))
        else:
            m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
            out.append(beta * sum(pi * math.log(pi / mi) for pi, mi in zip(p, m)) +
                       (1 - beta) * sum(qi * math.log(qi / mi) for qi, mi in zip(q, m)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("backend", ["torch", "chunked"])
@pytest.mark.parametrize("kind, T, beta", [("forward", 1.0, 0.5), ("reverse", 0.7, 0.5), ("jsd", 1.3, 0.5),
                                           ("jsd", 1.0, 0.1)])
def test_matches_slow_formula(backend, kind, T, beta):
    torch.manual_seed(0)
    s, t = torch.randn(5, 13) * 2, torch.randn(5, 13) * 2
    out = kl_div(s, t, kind, T, beta, backend=backend, chunk=2)
    torch.testing.assert_close(out.double(), slow(s, t, kind, T, beta), atol=1e-5, rtol=1e-5)
    assert (out >= -1e-6).all()
    assert kl_div(s, s, kind, T, beta, backend=backend).abs().max() < 1e-5     # zero when the two agree


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_gradcheck_and_teacher_frozen(kind):
    torch.manual_seed(1)
    s = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: kl_div(x, t, kind, 0.9, 0.3, backend="chunked", chunk=3), (s,))
    kl_div(s, t, kind, backend="chunked").sum().backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("kw, err, msg", [
    (dict(kind="tv"), ValueError, "unknown kind"),
    (dict(backend="cuda"), ValueError, "unknown backend"),
    (dict(backend="triton"), NotImplementedError, "not written yet"),
    (dict(kind="jsd", beta=1.0), ValueError, "0 < beta < 1"),
])
def test_bad_input(kw, err, msg):
    with pytest.raises(err, match=msg):
        kl_div(torch.randn(2, 5), torch.randn(2, 5), **kw)
    with pytest.raises(ValueError, match="same shape"):
        kl_div(torch.randn(2, 5), torch.randn(2, 6))
