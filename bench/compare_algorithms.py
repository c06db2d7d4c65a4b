"""Every algorithm from one SFT start at the same number of sampled completions, on several seeds, side by side.

    python bench/compare_algorithms.py                      # 11 methods x seeds 0,1,2; about 70 min on 2 CPU cores
    python bench/compare_algorithms.py --seeds=0 --samples=2048 --algos=grpo,expert_iteration

Each (method, seed) trains with its stage's own script (`--seed=S`) until `samples` completions have been sampled
(DAPO's refills count), in out_dir/<method>/seed<S>/, and is then scored on the same held-out problems:
  maj@1   greedy accuracy on `eval_problems` problems;
  pass@k  for k = 1, 2, 4, ... `k` (the unbiased estimator) and maj@8, from `k` samples at `temperature` for each of
          the first `sample_problems` of them.
The continued-SFT control trains on as many reference solutions as the others sample completions. Finished runs and
scores are kept: a rerun only adds what is missing (other settings in a kept folder stop it with one line).
Writes out_dir/{results.json, table.md, compare.png}: mean ± standard deviation over seeds, and which gains exceed
the spread (every seed of the method above every seed's start).
"""
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from nanoreason.checkpoint import continued_sft_settings, load_model, load_start
from nanoreason.config import check, int_list, parse_args, run_main, run_stage
from nanoreason.evaluate import accuracy
from nanoreason.report import mean_sd, read_jsonl, write_table
from nanoreason.search import pass_at_k, sample_answers, sample_metrics
from nanoreason.tasks import make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where the train_*.py scripts are

ALGOS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce", "reinforce_pp", "expert_iteration", "rcrl",
         "sft_control")
GROUP = ("grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce", "reinforce_pp")   # train_grpo.py --algo=
START = "start (SFT)"


@dataclass
class CompareConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/compare"
    samples: int = 8192               # sampled completions per run (the control: reference solutions)
    algos: str = ",".join(ALGOS)
    seeds: str = "0,1,2"
    k: int = 64                       # samples per problem for pass@1..k (a power of 2) and maj@8
    temperature: float = 1.0
    eval_problems: int = 256          # greedy maj@1 on these
    sample_problems: int = 128        # the first this-many get k samples each

    def __post_init__(self):
        names = [a.strip() for a in self.algos.split(",") if a.strip()]
        bad = [a for a in names if a not in ALGOS]
        check(not bad, f"unknown algorithm {bad[0]!r} in algos; choose from {', '.join(ALGOS)}" if bad else "")
        check(self.samples >= 64, f"samples must be >= 64 (one PPO batch), got {self.samples}")
        check(self.k >= 8 and self.k & (self.k - 1) == 0, f"k must be a power of 2 >= 8 (for maj@8), got {self.k}")
        check(0 < self.sample_problems <= self.eval_problems, f"sample_problems must be in 1..eval_problems, got "
              f"{self.sample_problems}")
        self.seed_list = int_list(self.seeds, "seeds")
        self.names = names


def run_algo(name: str, seed: int, d: str, c: CompareConfig) -> dict:
    """Train `name` from the shared start with the sample budget into `d` (kept if already there); its summary."""
    common = dict(init_from=c.init_from, out_dir=d, seed=seed, eval_problems=c.eval_problems, reuse=True)
    iters = c.samples // 64                                   # PPO and the group methods: 64 completions a step
    if name == "ppo":
        return run_stage(f"{ROOT}/train_ppo.py", **common, iters=iters, batch_size=64, eval_interval=max(1, iters // 2))
    if name in GROUP:                                         # DAPO stops when its refills have spent the budget
        own = dict(epochs=2, clip_eps=3e-4) if name == "gspo" else {}   # GSPO's ratio differs from 1 only off-policy
        return run_stage(f"{ROOT}/train_grpo.py", **common, algo=name, iters=iters, prompts_per_iter=16,
                         group_size=4, eval_interval=max(1, iters // 2), max_samples=c.samples, **own)
    if name in ("expert_iteration", "rcrl"):                  # iterations of (up to) 256 problems x 4 samples
        n = max(1, c.samples // 1024)
        return run_stage(f"{ROOT}/train_{name}.py", **common, iters=n, prompts_per_iter=c.samples // (4 * n),
                         group_size=4)
    s = run_stage(f"{ROOT}/train_sft.py", **{**continued_sft_settings(c.init_from), "seed": seed}, out_dir=d,
                  iters=c.samples // 32, reuse=True)
    return {**s, "samples": c.samples}


def score(ckpt: str, prefix, test, seed: int, c: CompareConfig) -> dict:
    """maj@1 (greedy) on `test`; pass@1..k and maj@8 from k samples for each of the first sample_problems."""
    model, tok, _ = load_model(ckpt)
    greedy, _ = accuracy(model, tok, test, prefix=prefix)
    torch.manual_seed(seed)
    some = test[:c.sample_problems]
    answers = sample_answers(model, tok, some, c.k, c.temperature, prefix=prefix)
    right = [sum(a == p.answer for a in ans) for p, ans in zip(some, answers)]
    ks = [2 ** i for i in range(c.k.bit_length())]                              # 1, 2, 4, ..., k
    return {"maj@1": greedy, "maj@8": sample_metrics(some, [a[:8] for a in answers], 8)["maj@8"],
            **{f"pass@{k}": sum(pass_at_k(c.k, r, k) for r in right) / len(some) for k in ks}}


def scored(d: str, ckpt: str, prefix, test, seed: int, c: CompareConfig) -> dict:
    """score(), kept in d/score.json with the settings it was made with; made again if they differ."""
    path = os.path.join(d, "score.json")
    how = dict(k=c.k, temperature=c.temperature, seed=seed, eval_problems=c.eval_problems,
               sample_problems=c.sample_problems, ckpt=ckpt, made=os.path.getmtime(ckpt))
    if os.path.isfile(path):
        kept = json.load(open(path))
        if kept.get("settings") == how:
            return kept["score"]
    t0 = time.time()
    s = {**score(ckpt, prefix, test, seed, c), "score_seconds": round(time.time() - t0, 1)}
    os.makedirs(d, exist_ok=True)
    json.dump({"settings": how, "score": s}, open(path, "w"), indent=2)
    return s


def table(runs: dict, c: CompareConfig) -> list[str]:
    """Markdown: mean ± sd over seeds of every figure, the gain over the start, and whether it exceeds the spread."""
    start = runs[START]
    lo_start, hi_start = min(r["maj@1"] for r in start), max(r["maj@1"] for r in start)
    base = statistics.mean(r["maj@1"] for r in start)
    k = c.k
    lines = [f"{c.eval_problems} held-out problems (maj@1: greedy); maj@8 and pass@k from {k} samples at "
             f"T = {c.temperature} for each of the first {c.sample_problems}. Mean ± standard deviation over seeds "
             f"{c.seeds}; every run {c.samples} sampled completions (the control: reference solutions).", "",
             f"| method | maj@1 | gain | beyond the spread | maj@8 | pass@1 | pass@8 | pass@{k} | completions | wall s |",
             "|---" * 10 + "|"]
    for name, rs in runs.items():
        xs = lambda key: [r[key] for r in rs]                                        # noqa: E731
        gain = mean_sd([x - base for x in xs("maj@1")], "+.1%") if name != START else ""
        beyond = ("" if name == START else "above" if min(xs("maj@1")) > hi_start else
                  "below" if max(xs("maj@1")) < lo_start else "no")
        lines.append(f"| {name} | {mean_sd(xs('maj@1'), '.1%')} | {gain} | {beyond} | {mean_sd(xs('maj@8'), '.1%')} | "
                     f"{mean_sd(xs('pass@1'), '.1%')} | {mean_sd(xs('pass@8'), '.1%')} | "
                     f"{mean_sd(xs(f'pass@{k}'), '.1%')} | {statistics.mean(xs('samples')):.0f} | "
                     f"{statistics.mean(xs('wall_seconds')):.0f} |")
    lines += ["", "Differences beyond the spread: on maj@1, every seed of the first method above every seed of the others.", ""]
    for name, rs in runs.items():
        beaten = [other for other, theirs in runs.items() if other != name and
                  min(r["maj@1"] for r in rs) > max(r["maj@1"] for r in theirs)]
        if beaten:
            lines.append(f"- {name} > {', '.join(beaten)}")
    return lines


def plot(path: str, runs: dict, c: CompareConfig):
    """Left: held-out greedy accuracy against sampled completions, mean over seeds with a min-max band.
    Right: pass@k against k at the end, the same way."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    ks = [2 ** i for i in range(c.k.bit_length())]
    for name, rs in runs.items():
        curves = [[(x["samples"], x["accuracy"]) for x in read_jsonl(r["metrics"]) if "accuracy" in x
                   and "samples" in x] for r in rs if r.get("metrics")]
        curves = [cv for cv in curves if cv]
        if curves and all(len(cv) == len(curves[0]) for cv in curves):
            xs = [statistics.mean(cv[i][0] for cv in curves) for i in range(len(curves[0]))]
            ys = list(zip(*[[y for _, y in cv] for cv in curves]))                   # per point: every seed's value
            line, = left.plot(xs, [statistics.mean(y) for y in ys], marker="o", ms=3, label=name)
            left.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=line.get_color(), alpha=0.15)
        else:                                                     # no curve: the end point with its range
            y = [r["maj@1"] for r in rs]
            line = left.errorbar([statistics.mean(r["samples"] for r in rs)], [statistics.mean(y)],
                                 yerr=[[statistics.mean(y) - min(y)], [max(y) - statistics.mean(y)]], marker="*",
                                 ms=10, capsize=3, label=name, linestyle="none")[0]
        pk = [[r[f"pass@{k}"] for r in rs] for k in ks]
        right.plot(ks, [statistics.mean(p) for p in pk], marker="o", ms=3, color=line.get_color(), label=name)
        right.fill_between(ks, [min(p) for p in pk], [max(p) for p in pk], color=line.get_color(), alpha=0.15)
    left.set(xlabel="sampled completions (control: reference solutions)", ylabel="held-out greedy accuracy (maj@1)",
             title=f"training: mean of seeds {c.seeds}, band = min..max")
    right.set(xlabel="k (samples per problem)", ylabel="pass@k", title=f"after {c.samples} completions")
    right.set_xscale("log", base=2)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(c: CompareConfig):
    os.makedirs(c.out_dir, exist_ok=True)
    _, _, task, task_seed = load_start(c.init_from)
    test = make_problems(c.eval_problems, "test", task_seed, task)
    t_all = time.time()
    start = [scored(os.path.join(c.out_dir, "start", f"seed{s}"), c.init_from, [], test, s, c) for s in c.seed_list]
    runs = {START: [{**r, "samples": 0, "wall_seconds": r["score_seconds"], "metrics": ""} for r in start]}
    for name in c.names:
        runs[name] = []
        for seed in c.seed_list:
            d = os.path.join(c.out_dir, name, f"seed{seed}")
            s = run_algo(name, seed, d, c)
            r = scored(d, os.path.join(d, "ckpt.pt"), s.get("prefix", []), test, seed, c)
            runs[name].append({**r, "seed": seed, "samples": s["samples"],
                               "wall_seconds": round(s["wall_seconds"] + r["score_seconds"], 1),
                               "metrics": os.path.join(d, "metrics.jsonl") if name != "sft_control" else ""})
            json.dump({"config": asdict(c), "runs": runs}, open(os.path.join(c.out_dir, "results.json"), "w"),
                      indent=2)                                                    # partial results survive
    lines = table(runs, c)
    total = sum(r["wall_seconds"] for rs in runs.values() for r in rs)
    lines += ["", f"Wall time of every run and its scoring, summed: {total / 60:.0f} min (this invocation: "
                  f"{(time.time() - t_all) / 60:.0f} min)."]
    write_table(os.path.join(c.out_dir, "table.md"), lines)
    plot(os.path.join(c.out_dir, "compare.png"), runs, c)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(CompareConfig)))
