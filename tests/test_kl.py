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


@pytest.mark.parametrize("backend", ["torch", "chunked", "triton"])
@pytest.mark.parametrize("kind, T, beta", [("forward", 1.0, 0.5), ("reverse", 0.7, 0.5), ("jsd", 1.3, 0.5),
                                           ("jsd", 1.0, 0.1)])
def test_matches_slow_formula(backend, kind, T, beta):
    torch.manual_seed(0)
    s, t = torch.randn(5, 13) * 2, torch.randn(5, 13) * 2
    out = kl_div(s, t, kind, T, beta, backend=backend, chunk=2, block_n=2, block_v=4)   # several tiles each way
    torch.testing.assert_close(out.double(), slow(s, t, kind, T, beta), atol=1e-5, rtol=1e-5)
    assert (out >= -1e-6).all()
    assert kl_div(s, s, kind, T, beta, backend=backend).abs().max() < 1e-5     # zero when the two agree


@pytest.mark.parametrize("backend", ["chunked", "triton"])
@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_gradcheck_and_teacher_frozen(kind, backend):
    torch.manual_seed(1)
    s = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    f = lambda x: kl_div(x, t, kind, 0.9, 0.3, backend=backend, chunk=3, block_n=2, block_v=4)  # noqa: E731
    assert torch.autograd.gradcheck(f, (s,))
    kl_div(s, t, kind, backend=backend).sum().backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("V", [1, 7, 65, 1000, 1024, 1025])
@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_triton_matches_the_twin_on_odd_shapes_with_upstream_gradient(V, kind):
    torch.manual_seed(V)
    s, t = (torch.randn(3, 5, V) * 3).requires_grad_(), torch.randn(3, 5, V) * 3
    g = torch.randn(3, 5)                                                        # a non-unit upstream gradient
    s0, t0 = s.detach().clone(), t.clone()
    out = {}
    for backend in ("torch", "triton"):
        s.grad = None
        y = kl_div(s, t, kind, 1.3, 0.2, backend=backend)
        (y * g).sum().backward()
        out[backend] = (y.detach(), s.grad.clone())
    torch.testing.assert_close(out["triton"][0], out["torch"][0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out["triton"][1], out["torch"][1], atol=2e-6, rtol=1e-4)
    assert torch.equal(s.detach(), s0) and torch.equal(t, t0)                    # inputs never written


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_triton_extreme_logits_and_bf16(kind):
    s = torch.tensor([[1e4, -1e4, 0.0, 5.0], [3.0, 3.0, 3.0, 3.0], [0.0, -float("inf"), 1.0, 2.0]])
    t = torch.tensor([[1e4, 0.0, -1e4, 5.0], [3.0, 3.0, 3.0, 3.0], [0.5, -float("inf"), 1.0, 0.0]])
    ref = kl_div(s.double(), t.double(), kind, backend="torch")
    got = kl_div(s, t, kind, backend="triton", block_v=2)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)
    sb, tb = torch.randn(6, 50).bfloat16().requires_grad_(), torch.randn(6, 50).bfloat16()
    y = kl_div(sb, tb, kind, backend="triton")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, kl_div(sb.float(), tb.float(), kind, backend="torch"), atol=1e-5, rtol=1e-4)
    y.sum().backward()
    assert sb.grad.dtype == torch.bfloat16 and torch.isfinite(sb.grad.float()).all()


def test_triton_without_gpu_or_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors, or TRITON_INTERPRET=1"):
        kl_div(torch.randn(2, 5), torch.randn(2, 5), backend="triton")


@pytest.mark.parametrize("kw, err, msg", [
    (dict(kind="tv"), ValueError, "unknown kind"),
    (dict(backend="cuda"), ValueError, "unknown backend"),
    (dict(kind="jsd", beta=1.0), ValueError, "0 < beta < 1"),
])
def test_bad_input(kw, err, msg):
    with pytest.raises(err, match=msg):
        kl_div(torch.randn(2, 5), torch.randn(2, 5), **kw)
    with pytest.raises(ValueError, match="same shape"):
        kl_div(torch.randn(2, 5), torch.randn(2, 6))


@pytest.mark.parametrize("op", ["jsd"])
def test_bench_writes_ratios_for_each_variant(op, tmp_path):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "bench/kernel_speed.py", "--N=64", "--V=512", "--compile=False", f"--op={op}",
                        "--repeats=1", f"--out_dir={tmp_path}"], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    table = open(tmp_path / f"{op}_N64_V512_float32.md").read()
    rows = {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")]
                                          for ln in table.splitlines()[4:] if ln.startswith("|"))}
    assert set(rows) == {"eager", "chunked"} and rows["eager"][2] == "1.00"
    assert all(float(r[5]) > 0 for r in rows.values())                 # GB/s: the least bytes over the time
