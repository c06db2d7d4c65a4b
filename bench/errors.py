"""Where models go wrong: held-out accuracy by the pattern of operations, and the first wrong step of each wrong answer.

    python bench/errors.py                                          # out/sft against out/ppo, 1024 held-out problems
    python bench/errors.py --ckpts=out/sft/ckpt.pt,out/grpo/ckpt.pt --problems=512

Every checkpoint answers the same held-out problems greedily (the task of the first checkpoint). A problem's pattern
is its operations in order (`-+`: a subtraction, then an addition). For each wrong answer the task's step oracle
(`tasks.check_steps`) finds the first wrong step; a few of those lines are shown, so you can see what kind of
mistake RL left: a wrong plan (the wrong numbers or operation) or a wrong arithmetic fact (`5+8=15`).
Writes out_dir/table.md.
"""
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

from nanoreason.checkpoint import load_model, load_start
from nanoreason.config import check, parse_args, run_main
from nanoreason.evaluate import solve
from nanoreason.report import write_table
from nanoreason.tasks import check_steps, extract_answer, make_problems, split_steps


@dataclass
class ErrorsConfig:
    ckpts: str = "out/sft/ckpt.pt,out/ppo/ckpt.pt"
    problems: int = 1024
    examples: int = 4               # first wrong steps shown per checkpoint
    out_dir: str = "out/errors"

    def __post_init__(self):
        self.ckpt_list = [p for p in self.ckpts.split(",") if p.strip()]
        check(bool(self.ckpt_list), "ckpts is empty")
        check(self.problems > 0, f"problems must be > 0, got {self.problems}")


def main(c: ErrorsConfig):
    _, _, task, task_seed = load_start(c.ckpt_list[0])
    test = make_problems(c.problems, "test", task_seed, task)
    patterns = ["".join(s.op for s in p.steps) for p in test]
    right, wrong_at, examples = {}, {}, {}
    for path in c.ckpt_list:
        model, tok, _ = load_model(path)
        completions = solve(model, tok, [p.question for p in test])
        right[path] = [extract_answer(text) == p.answer for text, p in zip(completions, test)]
        wrong_at[path], examples[path] = Counter(), []
        for p, text, ok in zip(test, completions, right[path]):
            if ok:
                continue
            verdicts, steps = check_steps(p, text), split_steps(text, prose=p.gsm8k)     # one verdict a step
            first = next((i for i, v in enumerate(verdicts) if not v), None)
            wrong_at[path]["no wrong step" if first is None else f"step {first + 1}"] += 1
            if first is not None and len(examples[path]) < c.examples:
                examples[path].append(steps[first])
    by_pattern = defaultdict(list)
    for i, pat in enumerate(patterns):
        by_pattern[pat].append(i)
    lines = [f"Greedy answers to {c.problems} held-out problems; accuracy by the operations of the problem, in order.",
             "", "| operations | problems | " + " | ".join(f"`{p}`" for p in c.ckpt_list) + " |",
             "|---|---|" + "---|" * len(c.ckpt_list)]
    for pat in sorted(by_pattern, key=lambda k: -len(by_pattern[k])):
        idx = by_pattern[pat]
        lines.append(f"| `{pat}` | {len(idx)} | " +
                     " | ".join(f"{sum(right[p][i] for i in idx) / len(idx):.1%}" for p in c.ckpt_list) + " |")
    lines.append(f"| all | {c.problems} | " +
                 " | ".join(f"**{sum(right[p]) / c.problems:.1%}**" for p in c.ckpt_list) + " |")
    lines += ["", "Wrong answers by their first wrong step (the task's step oracle), and some of those lines:", ""]
    for p in c.ckpt_list:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(wrong_at[p].items()))
        shown = ", ".join(f"`{line}`" for line in examples[p])
        lines.append(f"- `{p}`: {counts}. {shown}")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ErrorsConfig)))
