"""On a CUDA GPU only (skipped elsewhere; `python bench/gpu_check.py` runs this file with the real Triton compiler,
TRITON_INTERPRET=0): the kernels at GPU tiles against the float64 reference, the model and sampler on the GPU against
the CPU, and a bf16 training step."""
import os

import pytest
import torch

from kernels.kl import KINDS, _divergence, kl_div
from kernels.logprobs import logprobs, logprobs_torch
from nanoreason.model import GPT, GPTConfig
from nanoreason.sampling import generate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def assert_near(got, ref, tol):
    """|got - ref| / |ref| < tol over the whole tensor (elementwise tolerances would pass a zero gradient)."""
    err = ((got.double() - ref).norm() / ref.norm().clamp(min=1e-30)).item()
    assert err < tol, f"relative error {err:.2e} >= {tol:.0e}"
compiled = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                              reason="the Triton kernels compiled for the GPU: run with TRITON_INTERPRET=0")


@compiled
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize("V", [515, 4096, 50257])
@pytest.mark.parametrize("entropy", [False, True])
def test_logprob_kernel_on_the_gpu_matches_float64(dtype, tol, V, entropy):
    """Against float64 on the same (rounded) logits: the values are computed in fp32, so they are close in every
    dtype; the gradient is written in the logits' dtype, so it carries that dtype's rounding."""
    torch.manual_seed(0)
    x = (torch.randn(300, V, device="cuda") * 3).to(dtype).requires_grad_()
    y = torch.randint(0, V, (300,), device="cuda")
    y[::7] = -100
    out = logprobs(x, y, 0.8, backend="triton", with_entropy=entropy)
    xr = x.detach().double().requires_grad_()
    ref = logprobs_torch(xr, y, 0.8, with_entropy=entropy)
    out, ref = (out, ref) if entropy else ((out,), (ref,))
    for o, r in zip(out, ref):
        assert_near(o, r, 1e-5)
    g = [torch.randn_like(r) for r in ref]
    (gx,) = torch.autograd.grad(sum((o.double() * gi).sum() for o, gi in zip(out, g)), x)
    (gr,) = torch.autograd.grad(sum((r * gi).sum() for r, gi in zip(ref, g)), xr)
    assert_near(gx, gr, tol)


@compiled
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float64, 1e-10)])
def test_kl_kernel_on_the_gpu_matches_torch(kind, dtype, tol):
    torch.manual_seed(0)
    s = torch.randn(200, 5000, device="cuda", dtype=dtype).requires_grad_()
    t = torch.randn(200, 5000, device="cuda", dtype=dtype)
    got = kl_div(s, t, kind, 0.9, 0.3, backend="triton")
    sr = s.detach().double().requires_grad_()
    ref = _divergence(sr, t.double(), kind, 0.9, 0.3)
    assert_near(got, ref, 1e-10 if dtype == torch.float64 else 1e-5)    # computed in fp32 (fp64) whatever the input
    (gs,) = torch.autograd.grad(got.sum(), s)
    (gr,) = torch.autograd.grad(ref.sum(), sr)
    assert_near(gs, gr, tol)


def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


def test_model_and_sampler_on_the_gpu_match_the_cpu():
    cpu = tiny()
    gpu = tiny().cuda()
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]]
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(gpu(ids.cuda()).cpu(), cpu(ids), atol=1e-4, rtol=1e-4)
    a = generate(cpu, prompts, 12, eot_id=0, greedy=True)
    b = generate(gpu, prompts, 12, eot_id=0, greedy=True)
    assert a.completion.tolist() == b.completion.cpu().tolist()


def test_a_bf16_training_step_on_the_gpu_is_finite():
    model = tiny().cuda().train()
    x = torch.randint(0, 300, (4, 32), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1).float(), x.roll(-1, 1).flatten())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
