"""Does RL widen what the model can solve, or sharpen what it already could? pass@k for k = 1 ... 256 of the base and
of the model pure RL made from it (Yue et al. 2025: RL raises pass@1, the base catches up at large k).

    python train_zero.py                  # first: out/base/ and out/zero/
    python bench/zero_passk.py            # 256 samples for each of 100 held-out problems, per model: about 5 minutes;
                                          # writes out/zero_passk/table.md and passk.png

pass@k is the unbiased estimator of Chen et al. 2021 (nanoreason/search.py) from n = `samples` answers per problem;
maj@k is the majority vote of k of them. Our answers are small whole numbers, so at large k a right final number can
be a lucky guess: "checked pass@k" counts only answers that are right with every step accepted by the step oracle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import write_summary, write_table
from nanoreason.search import pass_at_k, sample_metrics, sample_texts
from nanoreason.tasks import check_steps, extract_answer, make_problems


@dataclass
class ZeroPassKConfig:
    out_dir: str = "out/zero_passk"
    base: str = "out/base/ckpt.pt"
    rl: str = "out/zero/ckpt.pt"
    problems: int = 100                   # held-out problems
    samples: int = 256                    # n answers per problem; k runs over the powers of 2 up to n
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self):
        check(self.samples > 0 and self.samples & (self.samples - 1) == 0,
              f"samples must be a power of 2, got {self.samples}")


def checked_right(problem, text: str) -> bool:
    """A right final answer whose every step (at least one) the step oracle accepts: not a lucky guess."""
    verdicts = check_steps(problem, text)
    return extract_answer(text) == problem.answer and bool(verdicts) and all(verdicts)


def curve(path: str, problems, c: ZeroPassKConfig, ks: list[int]) -> dict:
    """{"pass@k", "maj@k", "checked pass@k"} for every k, from `c.samples` sampled answers per problem."""
    model, tok, _ = load_model(path)
    torch.manual_seed(c.seed)
    texts = []
    for i in tqdm(range(0, len(problems), 4), desc=f"sampling {path}"):
        texts += sample_texts(model, tok, problems[i:i + 4], c.samples, c.temperature, max_new_tokens=c.max_new_tokens)
    answers = [[extract_answer(t) for t in ts] for ts in texts]
    checked = [sum(checked_right(p, t) for t in ts) for p, ts in zip(problems, texts)]
    out = {name: v for k in ks for name, v in sample_metrics(problems, answers, k).items()}
    return {**out, **{f"checked pass@{k}": sum(pass_at_k(c.samples, n, k) for n in checked) / len(problems)
                      for k in ks}}


def main(c: ZeroPassKConfig):
    for path in (c.base, c.rl):
        check(os.path.isfile(path), f"{path}: no such checkpoint; run python train_zero.py first")
    task, task_seed = task_of(load_model(c.base)[2]["config"])
    problems = make_problems(c.problems, "test", task_seed, task)
    ks = [2 ** i for i in range(c.samples.bit_length())]
    os.makedirs(c.out_dir, exist_ok=True)
    base, rl = curve(c.base, problems, c, ks), curve(c.rl, problems, c, ks)
    write_summary(os.path.join(c.out_dir, "summary.json"), {"k": ks, "base": base, "rl": rl, "config": vars(c)})

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m, color in (("base", base, "tab:gray"), ("after pure RL", rl, "tab:blue")):
        ax.plot(ks, [m[f"pass@{k}"] for k in ks], "o-", color=color, label=f"{name}: pass@k")
        ax.plot(ks, [m[f"checked pass@{k}"] for k in ks], "s--", color=color, label=f"{name}: pass@k, steps checked")
        ax.plot(ks, [m[f"maj@{k}"] for k in ks], ":", color=color, alpha=0.6, label=f"{name}: majority of k")
    ax.set(xscale="log", xlabel="k (samples per problem)", ylabel=f"held-out, {len(problems)} problems", ylim=(0, 1.02),
           title="does RL widen what the model can solve?")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(c.out_dir, "passk.png"), dpi=120)

    lines = [f"pass@k and majority-of-k on {len(problems)} held-out problems, {c.samples} answers per problem at "
             f"temperature {c.temperature:g}, of the base `{c.base}` and of pure RL from it `{c.rl}`; one run.", "",
             "| k | pass@k: base | RL | checked pass@k: base | RL | majority of k: base | RL |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | " + " | ".join(f"{m[f'{what}{k}']:.1%}" for what in ("pass@", "checked pass@", "maj@")
                                      for m in (base, rl)) + " |" for k in ks]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroPassKConfig)))
