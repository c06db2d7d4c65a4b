"""kernels.logprobs: the Triton kernel (CPU interpreter, TRITON_INTERPRET=1 from conftest) and the chunked twin
against a float64 reference."""
import json
import os
import subprocess
import sys

import pytest
import torch

from kernels.logprobs import linear_logprobs, logprobs, logprobs_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BACKENDS = ["chunked", "triton"]


def reference(x, y, T=1.0):
    return logprobs_torch(x.detach().double().requires_grad_(), y, T)


def check(backend, x, y, T=1.0, atol=1e-5, **kw):
    x = x.detach().requires_grad_()
    before = x.detach().clone()
    g = torch.randn(y.shape, dtype=torch.float64)                       # a non-unit upstream gradient
    out = logprobs(x, y, T, backend=backend, **kw)
    xr = x.detach().double().requires_grad_()
    ref = logprobs_torch(xr, y, T)
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=1e-5)
    (gx,) = torch.autograd.grad((out.double() * g).sum(), x)
    (gr,) = torch.autograd.grad((ref * g).sum(), xr)
    torch.testing.assert_close(gx.double(), gr, atol=atol, rtol=1e-4)
    assert torch.equal(x.detach(), before)                              # the logits are never written


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("V", [1, 7, 65, 1000, 16, 17])
def test_odd_vocabularies_and_multi_tile(backend, V):
    torch.manual_seed(V)
    x, y = torch.randn(3, 5, V) * 3, torch.randint(0, V, (3, 5))
    check(backend, x, y, block_n=4, block_v=16, chunk=4)               # small blocks: the multi-tile path runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperature_and_ignored_positions(backend):
    torch.manual_seed(1)
    x, y = torch.randn(6, 33), torch.randint(0, 33, (6,))
    y[[1, 4]] = -100
    check(backend, x, y, T=0.6, block_v=8, chunk=4)
    out = logprobs(x, y, backend=backend, block_v=8)
    assert out[1] == 0 and out[4] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_logits(backend):
    x = torch.randn(5, 40)
    x[0, :] = 3.0                                   # a constant row: uniform
    x[1, 3] = 1e4                                   # one huge logit
    x[2, :] = -1e4
    x[2, 7] = 1e4
    x[3, 10:] = float("-inf")                       # -inf entries (not the target)
    x[4, 5] = -1e4
    y = torch.tensor([0, 3, 7, 2, 5])
    out = logprobs(x, y, backend=backend, block_v=16, chunk=2)
    ref = logprobs_torch(x.double(), y)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all() and abs(out[0].item() + torch.log(torch.tensor(40.0)).item()) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_inputs_compute_in_fp32(backend):
    torch.manual_seed(2)
    x, y = torch.randn(4, 9, 50).to(torch.bfloat16), torch.randint(0, 50, (4, 9))
    out = logprobs(x, y, backend=backend, block_v=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), logprobs_torch(x.double(), y), atol=1e-5, rtol=1e-5)
    xg = x.clone().requires_grad_()
    logprobs(xg, y, backend=backend, block_v=16).sum().backward()
    assert xg.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    torch.manual_seed(3)
    x = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, 10])
    assert torch.autograd.gradcheck(lambda t: logprobs(t, y, 0.8, backend=backend, block_v=4, chunk=2), (x,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("V", [1, 7, 65])
def test_entropy_and_its_gradient(backend, V):
    """with_entropy: H = -sum p log p of softmax(x / T) and its gradient, beside the log-probs, against float64 eager
    autograd; -inf entries (0 log 0 = 0), a constant row, huge logits, an ignored target, several tiles/blocks."""
    torch.manual_seed(V)
    x, y = torch.randn(6, V) * 3, torch.randint(0, V, (6,))
    x[0, 1:] = float("-inf")
    x[1] = 2.0
    x[2, 0] = 1e4
    y[3] = -100
    for T in (1.0, 0.7):
        xb, xr = x.clone().requires_grad_(), x.double().requires_grad_()
        lp, ent = logprobs(xb, y, T, backend=backend, with_entropy=True, block_v=16, chunk=4)
        lr, er = logprobs_torch(xr, y, T, with_entropy=True)
        torch.testing.assert_close(ent.double(), er, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lp.double(), lr, atol=1e-5, rtol=1e-5)
        g, gH = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
        (gx,) = torch.autograd.grad((lp.double() * g + ent.double() * gH).sum(), xb)
        (gr,) = torch.autograd.grad((lr * g + er * gH).sum(), xr)
        torch.testing.assert_close(gx.double(), gr, atol=1e-5, rtol=1e-4)
    assert abs(ent[1].item() - torch.log(torch.tensor(float(V))).item()) < 1e-5 and abs(ent[0].item()) < 1e-6
    x64 = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: [o * 1 for o in logprobs(t, torch.tensor([0, 5, 10]), 0.8, backend=backend,
                                                                       with_entropy=True, block_v=4, chunk=2)], (x64,))


@pytest.mark.parametrize("T", [1.0, 0.6])
def test_linear_logprobs_never_needs_the_logits(T):
    """The fused lm_head + log-softmax (chunked over rows, logits remade in backward) against eager float64 autograd
    through h @ w.T: log-probs, entropy and the gradients to both the hidden states and the weight."""
    torch.manual_seed(4)
    h, w = torch.randn(3, 7, 16), torch.randn(50, 16)
    y = torch.randint(0, 50, (3, 7))
    y[0, 2] = -100
    hb, wb = h.clone().requires_grad_(), w.clone().requires_grad_()
    hr, wr = h.double().requires_grad_(), w.double().requires_grad_()
    lp, ent = linear_logprobs(hb, wb, y, T, backend="chunked", chunk=4, with_entropy=True)    # 6 blocks of rows
    lr, er = logprobs_torch(hr @ wr.T, y, T, with_entropy=True)
    torch.testing.assert_close(lp.double(), lr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent.double(), er, atol=1e-5, rtol=1e-5)
    g, gH = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    got = torch.autograd.grad((lp.double() * g + ent.double() * gH).sum(), (hb, wb))
    want = torch.autograd.grad((lr * g + er * gH).sum(), (hr, wr))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)
    assert torch.equal(hb.detach(), h) and torch.equal(wb.detach(), w)                # inputs never written
    h64, w64 = h[:1, :3].double().requires_grad_(), w[:9].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: linear_logprobs(a, b, y[:1, :3] % 9, T, backend="chunked", chunk=2),
                                    (h64, w64))


def test_linear_logprobs_under_bf16_autocast_matches_eager():
    """--dtype=bfloat16: the block logits are a bf16 matmul forward and again in backward (the same numbers), so the
    softmax recomputed from the saved LSE sums to 1 and the result matches eager autocast to bf16 precision."""
    torch.manual_seed(5)
    h, w, y = torch.randn(64, 32), torch.randn(300, 32) / 4, torch.randint(0, 300, (64,))
    res = []
    for fn in (lambda a, b: logprobs_torch(a @ b.T, y), lambda a, b: linear_logprobs(a, b, y, backend="chunked", chunk=16)):
        a, b = h.clone().requires_grad_(), w.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(a, b)
        res.append((out, *torch.autograd.grad(out.sum(), (a, b))))
    assert res[1][0].dtype == torch.float32
    for u, v in zip(*res):
        torch.testing.assert_close(u.float(), v.float(), atol=3e-2, rtol=3e-2)


def test_linear_logprobs_bad_input_is_named():
    h, w, y = torch.randn(2, 3, 8), torch.randn(20, 8), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"hidden \(2, 3, 8\) and weight \(20, 4\) do not match"):
        linear_logprobs(h, torch.randn(20, 4), y)
    with pytest.raises(ValueError, match="target 20 is out of range for a vocabulary of 20"):
        linear_logprobs(h, w, y + 20)
    with pytest.raises(ValueError, match=r"hidden \(2, 3, 8\) and targets \(2, 4\) do not match"):
        linear_logprobs(h, w, torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("kw, err, msg", [
    (dict(x=torch.randn(2, 3, 5), y=torch.zeros(2, 4, dtype=torch.long)), ValueError, "do not match"),
    (dict(x=torch.randn(2, 5), y=torch.tensor([0, 5])), ValueError, "target 5 is out of range for a vocabulary of 5"),
    (dict(x=torch.ones(2, 5, dtype=torch.long), y=torch.tensor([0, 1])), TypeError, "floating-point"),
    (dict(x=torch.randn(2, 5), y=torch.tensor([0, 1]), backend="cuda"), ValueError, "unknown backend"),
    (dict(x=torch.randn(2, 5), y=torch.tensor([0, 1]), temperature=0.0), ValueError, "temperature must be > 0"),
])
def test_bad_input_is_named_before_any_launch(kw, err, msg):
    with pytest.raises(err, match=msg):
        logprobs(kw.pop("x"), kw.pop("y"), **kw)


def test_triton_without_gpu_or_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors, or TRITON_INTERPRET=1"):
        logprobs(torch.randn(2, 5), torch.tensor([0, 1]), backend="triton")


def test_auto_picks_the_chunked_twin_on_cpu_for_large_logits(monkeypatch):
    import kernels.logprobs as kl
    calls = []
    monkeypatch.setattr(kl._Chunked, "apply", lambda *a: calls.append(1) or kl.logprobs_torch(a[0], a[1]))
    logprobs(torch.randn(2, 5), torch.tensor([0, 1]))
    assert not calls                                                # small: the plain twin
    monkeypatch.setattr(kl, "AUTO_TORCH_MAX", 4)
    logprobs(torch.randn(2, 5), torch.tensor([0, 1]))
    assert calls


def test_auto_is_the_readable_twin_for_small_logits_and_chunked_for_large():
    from kernels.logprobs import AUTO_TORCH_MAX, auto_backend
    assert auto_backend(False, 32 * 100 * 515) == "torch"           # a PPO minibatch of our model: plain log_softmax
    assert auto_backend(False, AUTO_TORCH_MAX + 1) == "chunked"
    assert auto_backend(True, AUTO_TORCH_MAX + 1) == "triton"
    x, y = torch.randn(8, 50, requires_grad=True), torch.randint(0, 50, (8,))
    out = logprobs(x, y, backend="auto")
    assert torch.equal(out, logprobs(x, y, backend="torch"))


def test_every_kernel_compiles_for_a100_and_h100_without_spilling(tmp_path):
    """A real compile for sm_80 and sm_90 (no GPU, no interpreter: a subprocess without TRITON_INTERPRET): every
    kernel, input dtype and mode at the widest tile a GPU launch picks, which holds the most values a thread."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "bench/kernel_compile.py", "--widest_only=True", f"--out_dir={tmp_path}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]                          # 1: a spill, named on stderr
    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 80                          # 4 kernels x 4 dtypes x (2 or 3 modes) x (N, V, stride ÷ 16 or not)
    assert {(r["kernel"], r["dtype"]) for r in rows} >= {("kl._kl_bwd", "fp64"), ("logprobs._fwd", "bf16")}
    assert all(0 < r[f"sm{a}_registers"] <= 255 and r[f"sm{a}_spills"] == 0 for r in rows for a in (80, 90))


def test_compile_bench_refuses_the_interpreter(tmp_path):
    r = subprocess.run([sys.executable, "bench/kernel_compile.py", f"--out_dir={tmp_path}"], cwd=ROOT,
                       env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: TRITON_INTERPRET=1 is set: this bench compiles for a GPU, not for the interpreter; run it without "
        "that variable"]


def test_triton_without_a_gpu_or_the_interpreter_is_one_line(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match=r"^backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1"):
        logprobs(torch.randn(3, 8), torch.tensor([0, 1, 2]), backend="triton")


def test_an_old_triton_is_one_line(monkeypatch):
    import triton

    from kernels.logprobs import require_triton
    require_triton.cache_clear()                                        # checked once per process: check again
    monkeypatch.setattr(triton, "__version__", "2.1.0")
    with pytest.raises(RuntimeError, match=r"^the Triton kernels need triton >= 3\.0; this machine has triton 2\.1\.0"):
        logprobs(torch.randn(3, 8), torch.tensor([0, 1, 2]), backend="triton")
    from kernels.aot import compile_variant, launch_variants
    with pytest.raises(RuntimeError, match=r"^ahead-of-time compiles .* need triton >= 3\.4; this machine has"):
        compile_variant(launch_variants(widest_only=True)[0], 90)


def test_gpu_check_names_the_missing_gpu_and_reads_its_tables():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run bench/gpu_check.py itself")
    r = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: bench/gpu_check.py needs a CUDA GPU; this machine has none (the CPU checks are the test suite and "
        "bench/kernel_compile.py)"]
    from bench.gpu_check import headline
    table = ("| variant | fwd+bwd ms | x eager | peak extra MiB | x eager | GB/s |\n|---|---|---|---|---|---|\n"
             "| eager | 40.0 | 1.00 | 8192.0 | 1.00 | 400 |\n| triton | 8.0 | 0.20 | 4096.0 | 0.50 | 2000 |\n")
    assert headline("kernels V=32768", table) == "triton 8.0 ms (0.20x eager time, 0.50x its memory), 2000 GB/s"
    assert headline("CUDA tests", "...\n29 passed, 1 skipped in 3.1s") == "29 passed, 1 skipped"
