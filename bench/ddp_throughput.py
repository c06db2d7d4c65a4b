"""Training tokens per second of train_sft.py with 1 and with N processes (torchrun DDP; gloo on CPU, nccl on GPUs).

    python bench/ddp_throughput.py                         # 1 vs 2 processes on this machine's CPU cores
    python bench/ddp_throughput.py --procs=1,2,4 --device=cuda --batch_size=256

The global batch is the same in every run (each of N processes takes batch_size / N); on CPU the cores are split
between the processes (OMP_NUM_THREADS = cores / N), so the comparison is "the same machine, used two ways". The
figure is train_sft.py's own `tokens_per_second` (tokens forwarded by all ranks / time in training steps; the
tokenizer, the evaluations and the process start-up are not counted). Writes <out_dir>/results.json.
"""
import json
import os
import subprocess
import sys

from dataclasses import dataclass

from nanoreason.config import ConfigError, parse_args, run_main
from nanoreason.report import write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ThroughputConfig:
    procs: str = "1,2"
    steps: int = 100
    batch_size: int = 32            # global: split over the processes
    device: str = "cpu"
    out_dir: str = "out/ddp_throughput"


def run(c: ThroughputConfig, n: int) -> dict:
    out = os.path.join(c.out_dir, f"procs{n}")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] \
        if n > 1 else [sys.executable]
    threads = max(1, (os.cpu_count() or 1) // n)
    r = subprocess.run([*launcher, "train_sft.py", f"--out_dir={out}", f"--iters={c.steps}",
                        f"--eval_interval={c.steps}", "--eval_problems=16", f"--batch_size={c.batch_size}",
                        f"--device={c.device}"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                       capture_output=True, text=True)
    if r.returncode:
        raise ConfigError(f"train_sft.py with {n} processes failed: {r.stderr.strip().splitlines()[-1]}")
    s = json.load(open(os.path.join(out, "summary.json")))
    return {"processes": n, "threads_per_process": threads, "tokens_per_second": s["tokens_per_second"]}


def main(c: ThroughputConfig):
    procs = [int(p) for p in c.procs.split(",")]
    rows = [run(c, n) for n in procs]
    base = rows[0]["tokens_per_second"]
    lines = ["| processes | threads each | SFT tokens/s | x one process |", "|---|---|---|---|"]
    for row in rows:
        row["ratio"] = row["tokens_per_second"] / base
        lines.append(f"| {row['processes']} | {row['threads_per_process']} | {row['tokens_per_second']:,} | "
                     f"{row['ratio']:.2f} |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)
    json.dump({"config": vars(c), "runs": rows}, open(os.path.join(c.out_dir, "results.json"), "w"), indent=2)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ThroughputConfig)))
