"""Time and peak extra memory of target-token log-probs (or a per-token KL), forward + backward, as ratios to eager.

    python bench/kernel_speed.py                          # N=8192, V=32768, fp32, on CPU (or the GPU if there is one)
    python bench/kernel_speed.py --N=16384 --V=131072 --dtype=bfloat16     # GPU-scale shapes (16K tokens x 131K vocab)
    python bench/kernel_speed.py --op=jsd                 # kernels.kl_div instead: --op=forward, reverse or jsd
    python bench/kernel_speed.py --op=linear --C=128      # kernels.linear_logprobs: the lm_head matmul fused in

Variants: eager (log_softmax + gather; for --op=linear, h @ w.T first), chunked (kernels' pure-torch chunked twin),
compiled (torch.compile of the eager twin), triton (CUDA only; for --op=linear, a matmul and then the kernel).
Each runs in a fresh subprocess; "extra memory" is the peak above the inputs (CPU: max resident set size; CUDA:
torch.cuda.max_memory_allocated).
"""
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from kernels.kl import KINDS, _divergence, kl_div
from kernels.logprobs import linear_logprobs, logprobs, logprobs_torch
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import write_table


@dataclass
class BenchConfig:
    N: int = 8192
    V: int = 32768
    dtype: str = "float32"
    repeats: int = 3
    compile: bool = True
    op: str = "logprobs"      # logprobs, linear (hidden states (N, C) and an lm_head (V, C) in), or a kl_div kind
    C: int = 128              # --op=linear: the hidden width (128: our model; 768: GPT-2 small)
    out_dir: str = "out/bench_kernels"   # writes <op>_N<N>_V<V>_<dtype>.md
    worker: str = ""          # internal: run one variant and print JSON

    def __post_init__(self):
        check(self.op in ("logprobs", "linear") or self.op in KINDS,
              f"op must be logprobs, linear, forward, reverse or jsd, got {self.op!r}")


def inputs(c: BenchConfig, dev: str):
    """(x, y, t): x the logits (N, V), or for --op=linear the pair (hidden (N, C), weight (V, C)), requiring grad;
    y the targets (N,); t the teacher logits of a kl_div op, else None."""
    torch.manual_seed(0)
    dt = getattr(torch, c.dtype)
    if c.op == "linear":
        x = (torch.randn(c.N, c.C, device=dev, dtype=dt).requires_grad_(),
             (torch.randn(c.V, c.C, device=dev, dtype=dt) / c.C**0.5).requires_grad_())
    else:
        x = torch.randn(c.N, c.V, device=dev, dtype=dt).requires_grad_()
    y = torch.randint(0, c.V, (c.N,), device=dev)
    t = torch.randn(c.N, c.V, device=dev, dtype=dt) if c.op in KINDS else None
    return x, y, t


def variant_fn(c: BenchConfig, variant: str, x, y, t):
    """The forward call of `variant` (eager, chunked, compiled, triton) for the op."""
    if c.op == "linear":
        h, w = x
        compiled = torch.compile(lambda a, b, y: logprobs_torch(a @ b.t(), y)) if variant == "compiled" else None
        return {"eager": lambda: logprobs_torch(h @ w.t(), y),
                "chunked": lambda: linear_logprobs(h, w, y, backend="chunked"),
                "compiled": lambda: compiled(h, w, y),
                "triton": lambda: linear_logprobs(h, w, y, backend="triton")}[variant]
    if c.op == "logprobs":
        compiled = torch.compile(logprobs_torch) if variant == "compiled" else None
        return {"eager": lambda: logprobs_torch(x, y), "chunked": lambda: logprobs(x, y, backend="chunked"),
                "compiled": lambda: compiled(x, y), "triton": lambda: logprobs(x, y, backend="triton")}[variant]
    compiled = torch.compile(_divergence) if variant == "compiled" else None
    return {"eager": lambda: kl_div(x, t, c.op, backend="torch"), "chunked": lambda: kl_div(x, t, c.op, backend="chunked"),
            "compiled": lambda: compiled(x, t, c.op, 1.0, 0.5), "triton": lambda: kl_div(x, t, c.op, backend="triton")}[variant]


def worker(c: BenchConfig):
    cuda = torch.cuda.is_available()
    x, y, t = inputs(c, "cuda" if cuda else "cpu")
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024    # noqa: E731  peak resident bytes
    rss_inputs = rss()
    fn = variant_fn(c, c.worker, x, y, t)
    leaves = x if isinstance(x, tuple) else (x,)
    fn().sum().backward()                                   # warm-up (and compilation): on the CPU, the first run in
    peak_cpu = rss() - rss_inputs                           # this fresh process sets its peak above the inputs
    for a in leaves:
        a.grad = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(c.repeats):
        t = time.perf_counter()
        fn().sum().backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        for a in leaves:
            a.grad = None
    peak = torch.cuda.max_memory_allocated() - base if cuda else peak_cpu
    print(json.dumps({"time": min(times), "peak_extra": peak}))


def run_worker(c: BenchConfig, variant: str):
    args = [f"--N={c.N}", f"--V={c.V}", f"--C={c.C}", f"--dtype={c.dtype}", f"--repeats={c.repeats}", f"--op={c.op}",
            f"--worker={variant}"]
    return subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True)


def main(c: BenchConfig):
    if c.worker:
        return worker(c)
    cuda = torch.cuda.is_available()
    variants = ["eager", "chunked"] + (["compiled"] if c.compile else []) + (["triton"] if cuda else [])
    where = "CUDA: " + torch.cuda.get_device_name() if cuda else "CPU"
    buffer = c.N * c.V * torch.tensor([], dtype=getattr(torch, c.dtype)).element_size() / 2**30
    print(f"{c.op}: N={c.N} V={c.V}{f' C={c.C}' if c.op == 'linear' else ''} {c.dtype} on {where}; "
          f"one logits buffer = {buffer:.2f} GiB")
    rows = {}
    for v in variants:
        r = run_worker(c, v)
        if r.returncode:
            print(f"{v:9s} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        rows[v] = json.loads(r.stdout.strip().splitlines()[-1])
    e = rows.get("eager")
    # The least traffic forward + backward can make: read the logits, read them again, write their gradient (and the
    # teacher's logits twice for a divergence). Achieved bandwidth = those bytes / time.
    least = (5 if c.op in KINDS else 3) * c.N * c.V * torch.tensor([], dtype=getattr(torch, c.dtype)).element_size()
    lines = [f"{c.op}: N={c.N}, V={c.V}{f', C={c.C}' if c.op == 'linear' else ''}, {c.dtype}, {where}", "",
             "| variant | fwd+bwd ms | x eager | peak extra MiB | x eager | GB/s |", "|---|---|---|---|---|---|"]
    for v, r in rows.items():
        gb = least / r["time"] / 1e9
        gbs = "-" if c.op == "linear" else f"{gb:.0f}" if gb >= 100 else f"{gb:.3g}"
        lines.append(f"| {v} | {r['time'] * 1e3:.1f} | {r['time'] / e['time']:.2f} | {r['peak_extra'] / 2**20:.1f} | "
                     f"{r['peak_extra'] / max(e['peak_extra'], 1):.2f} | {gbs} |")
    lines += ["", "GB/s: the least bytes forward + backward must move over the time: the logits read twice and their "
              "gradient written once (a divergence also reads the teacher's twice); none for --op=linear, whose "
              "fused twin never makes the logits."]
    write_table(os.path.join(c.out_dir, f"{c.op}_N{c.N}_V{c.V}_{c.dtype}.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(BenchConfig)))
