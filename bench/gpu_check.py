"""One command for any CUDA machine: does everything that needs a GPU work, and how fast are the kernels there?

    python bench/gpu_check.py                   # writes out/gpu_check/ (not yet run on a GPU: each step has a limit)

Steps, each a subprocess with its own time limit (a failure is recorded and the next step runs):
  1. tests/test_cuda.py with the Triton compiler (TRITON_INTERPRET=0): the kernels at GPU tiles against float64,
     the model and the sampler against the CPU, a bf16 training step;
  2. bench/kernel_speed.py at N=16384, V=32768 and V=131072, bf16: forward + backward time, peak memory and
     achieved bandwidth of the Triton kernel against eager and torch.compile;
  3. a bf16 PPO smoke run on the GPU (a tiny SFT start, then 6 PPO iterations);
  4. a one-GPU torchrun run of train_grpo.py (the nccl process group).
Writes out/gpu_check/summary.md (one table: step, result, seconds, headline) and each step's log.
"""
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from nanoreason.config import ConfigError, parse_args, run_main
from nanoreason.report import write_table

TINY = ["--vocab_size=300", "--n_layer=2", "--n_head=2", "--n_embd=64", "--block_size=96", "--ops=+-", "--min_steps=1",
        "--max_steps=1"]                                   # a tiny model on one-step problems


@dataclass
class GPUCheckConfig:
    out_dir: str = "out/gpu_check"
    N: int = 16384
    vocabs: str = "32768,131072"
    dtype: str = "bfloat16"


def steps(c: GPUCheckConfig) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of each step."""
    py, o = sys.executable, c.out_dir
    out = [("CUDA tests", [py, "-m", "pytest", "-q", "tests/test_cuda.py"], 180)]
    for V in c.vocabs.split(","):
        out.append((f"kernels V={V}", [py, "bench/kernel_speed.py", f"--N={c.N}", f"--V={V}", f"--dtype={c.dtype}",
                                       f"--out_dir={o}/kernels"], 150))
    out += [("SFT start (tiny)", [py, "train_sft.py", f"--out_dir={o}/sft", "--device=cuda", "--iters=200",
                                  "--eval_interval=200", "--eval_problems=64", "--max_new_tokens=24", *TINY], 120),
            ("PPO bf16", [py, "train_ppo.py", f"--init_from={o}/sft/ckpt.pt", f"--out_dir={o}/ppo", "--device=cuda",
                          "--dtype=bfloat16", "--iters=6", "--eval_interval=3", "--eval_problems=64",
                          "--max_new_tokens=24"], 120),
            ("torchrun nccl", [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                               "train_grpo.py", f"--init_from={o}/sft/ckpt.pt", f"--out_dir={o}/grpo",
                               "--device=cuda", "--iters=4", "--eval_interval=4", "--eval_problems=32",
                               "--max_new_tokens=24"], 120)]
    return out


def headline(name: str, log: str) -> str:
    """The one figure a step's log holds that matters: tests passed, the kernel's time and bandwidth, the gain."""
    if name == "CUDA tests":
        m = re.findall(r"\d+ (?:passed|failed|skipped|error)", log)
        return ", ".join(m) or "-"
    if name.startswith("kernels"):
        cell = r" \| ([\d.]+)"
        rows = {r[0]: r for r in re.findall(r"\| (\w+)" + cell * 4 + r" \| (\S+) \|", log)}
        t = rows.get("triton")
        return f"triton {t[1]} ms ({t[2]}x eager time, {t[4]}x its memory), {t[5]} GB/s" if t else "no triton row"
    if name in ("PPO bf16", "torchrun nccl", "SFT start (tiny)"):
        m = re.findall(r"accuracy ([\d.]+%)", log)
        return f"held-out accuracy {m[0]} -> {m[-1]}" if m else "-"
    return "-"


def run(cmd: list[str], limit: int, env: dict) -> tuple[bool, str]:
    """(succeeded, stdout + stderr) of `cmd` in its own process group, which is killed whole after `limit` seconds
    (torchrun's workers with it, so none keeps holding the GPU)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=limit)
        return p.returncode == 0, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return False, out.decode(errors="replace") + f"\ntimed out after {limit} s"


def main(c: GPUCheckConfig):
    if not torch.cuda.is_available():
        raise ConfigError("bench/gpu_check.py needs a CUDA GPU; this machine has none (the CPU checks are the test "
                          "suite and bench/kernel_compile.py)")
    os.makedirs(c.out_dir, exist_ok=True)
    env = dict(os.environ, TRITON_INTERPRET="0")
    rows = [f"GPU check on {torch.cuda.get_device_name()} (torch {torch.__version__})", "",
            "| step | result | seconds | headline |", "|---|---|---|---|"]
    failed = 0
    for name, cmd, limit in steps(c):
        start = time.perf_counter()
        ok, log = run(cmd, limit, env)
        seconds = time.perf_counter() - start
        with open(os.path.join(c.out_dir, re.sub(r"\W+", "_", name).strip("_") + ".log"), "w") as f:
            f.write(f"$ {' '.join(cmd)}\n{log}")
        failed += not ok
        last = log.strip().splitlines()[-1] if log.strip() else ""
        rows.append(f"| {name} | {'ok' if ok else 'FAILED: ' + last[:120]} | {seconds:.0f} | {headline(name, log)} |")
        print(rows[-1], flush=True)
    write_table(os.path.join(c.out_dir, "summary.md"), rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(GPUCheckConfig)))
