"""Every algorithm from one SFT start at the same number of sampled completions, side by side.

    python bench/compare_algorithms.py                      # 8192 completions each; 8-15 min on 2 CPU cores
    python bench/compare_algorithms.py --samples=2048 --algos=grpo,expert_iteration

For each algorithm it runs the stage's script with the budget turned into iterations, then scores the
result on the same held-out problems: maj@1 (greedy), maj@k and pass@k (k samples at `temperature`, the unbiased
estimator). The continued-SFT control trains on as many reference solutions as the others sample completions.
Writes out/compare/{results.json, table.md, accuracy_vs_samples.png}.
"""
import json
import os
import time
from dataclasses import dataclass

import torch

from nanoreason.checkpoint import continued_sft_settings, load_model, load_start
from nanoreason.config import ConfigError, parse_args, run_main, run_stage
from nanoreason.evaluate import accuracy
from nanoreason.report import read_jsonl
from nanoreason.search import sample_answers, sample_metrics
from nanoreason.tasks import make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where the train_*.py scripts are

ALGOS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce", "reinforce_pp", "expert_iteration", "rcrl",
         "sft_control")


@dataclass
class CompareConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/compare"
    samples: int = 8192               # sampled completions per algorithm (the control: reference solutions)
    algos: str = ",".join(ALGOS)
    k: int = 8                        # samples per test problem for maj@k and pass@k
    temperature: float = 1.0
    eval_problems: int = 256
    seed: int = 0


def run_algo(name: str, c: CompareConfig) -> tuple[str, dict]:
    """Train `name` from the shared start with the sample budget; returns (its checkpoint, its summary)."""
    d = os.path.join(c.out_dir, name)
    common = dict(init_from=c.init_from, out_dir=d, seed=c.seed, eval_problems=c.eval_problems)
    if name == "ppo":
        s = run_stage(f"{ROOT}/train_ppo.py", **common, iters=c.samples // 64, batch_size=64, eval_interval=10**9)
    elif name in ("grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce", "reinforce_pp"):
        s = run_stage(f"{ROOT}/train_grpo.py", **common, algo=name, iters=c.samples // 64,
                      prompts_per_iter=16, group_size=4, eval_interval=10**9)
    elif name in ("expert_iteration", "rcrl"):                    # iterations of (up to) 256 problems x 4 samples
        iters = max(1, c.samples // 1024)
        s = run_stage(f"{ROOT}/train_{name}.py", **common, iters=iters, prompts_per_iter=c.samples // (4 * iters),
                      group_size=4)
    else:
        s = run_stage(f"{ROOT}/train_sft.py", **continued_sft_settings(c.init_from), out_dir=d, iters=c.samples // 32)
        s.update(samples=c.samples)
    return os.path.join(d, "ckpt.pt"), s


def score(ckpt: str, prefix, test, c: CompareConfig) -> dict:
    model, tok, _ = load_model(ckpt)
    torch.manual_seed(c.seed)
    greedy, _ = accuracy(model, tok, test, prefix=prefix)
    answers = sample_answers(model, tok, test, c.k, c.temperature, prefix=prefix)
    return {"maj@1": greedy, **sample_metrics(test, answers, c.k)}


def plot(path: str, runs: dict, c: CompareConfig):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in runs.items():
        rows = [x for x in read_jsonl(r["metrics"]) if "accuracy" in x and "samples" in x]
        if rows:
            ax.plot([x["samples"] for x in rows], [x["accuracy"] for x in rows], marker="o", label=name)
        else:
            ax.scatter([r["samples"]], [r["maj@1"]], marker="*", s=120, label=name, zorder=3)
    ax.set_xlabel("sampled completions (control: reference solutions)")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title(f"one SFT start, {c.samples} completions each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(c: CompareConfig):
    names = [a.strip() for a in c.algos.split(",") if a.strip()]
    bad = [a for a in names if a not in ALGOS]
    if bad:
        raise ConfigError(f"unknown algorithm {bad[0]!r} in algos; choose from {', '.join(ALGOS)}")
    if c.samples < 64 or c.k < 1:
        raise ConfigError(f"samples must be >= 64 (one PPO batch) and k >= 1, got samples={c.samples}, k={c.k}")
    os.makedirs(c.out_dir, exist_ok=True)
    _, _, task, task_seed = load_start(c.init_from)
    test = make_problems(c.eval_problems, "test", task_seed, task)
    runs = {"start (SFT)": {**score(c.init_from, [], test, c), "samples": 0, "wall_seconds": 0.0, "metrics": ""}}
    for name in names:
        t0 = time.time()
        ckpt, s = run_algo(name, c)
        runs[name] = {**score(ckpt, s.get("prefix", []), test, c), "samples": s["samples"],
                      "wall_seconds": round(time.time() - t0, 1),
                      "metrics": os.path.join(os.path.dirname(ckpt), "metrics.jsonl")}
        json.dump(runs, open(os.path.join(c.out_dir, "results.json"), "w"), indent=2)   # partial results survive
    k = c.k
    lines = [f"| algorithm | maj@1 (greedy) | gain | maj@{k} | pass@{k} | completions | wall s |", "|---" * 7 + "|"]
    base = runs["start (SFT)"]["maj@1"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['maj@1']:.1%} | {r['maj@1'] - base:+.1%} | {r[f'maj@{k}']:.1%} | "
                     f"{r[f'pass@{k}']:.1%} | {r['samples']} | {r['wall_seconds']:.0f} |")
    table = "\n".join(lines)
    open(os.path.join(c.out_dir, "table.md"), "w").write(table + "\n")
    plot(os.path.join(c.out_dir, "accuracy_vs_samples.png"), {n: r for n, r in runs.items() if r["metrics"]}, c)
    print(f"\n{len(test)} held-out problems, k={k} samples at T={c.temperature}:\n{table}")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(CompareConfig)))
