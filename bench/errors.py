"""Where models go wrong: held-out accuracy by the pattern of operations, and the first wrong step of each wrong answer.

    python bench/errors.py                                          # out/sft against out/ppo, 1024 held-out problems
    python bench/errors.py --ckpts=out/sft/ckpt.pt,out/grpo/ckpt.pt --problems=512

Every checkpoint answers the same held-out problems greedily (the task of the first checkpoint). A problem's pattern
is its operations in order (`-+`: a subtraction, then an addition). For each wrong answer the task's step oracle
(`tasks.check_steps`) finds the first wrong step, and that step is sorted by kind: wrong arithmetic (`5+8=15`), or
right arithmetic on a quantity the problem does not need or has not given yet (a wrong plan). A few of those lines
are shown. Writes out_dir/table.md.
"""
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import check, parse_args, run_main
from nanoreason.evaluate import solve
from nanoreason.report import write_table
from nanoreason.tasks import ANNOTATION, check_steps, extract_answer, make_problems, parse_arith, split_steps


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


def step_kind(line: str) -> str:
    """What is wrong with a step the oracle rejects: its arithmetic, or (arithmetic right) the quantity it computes."""
    annotations = ANNOTATION.findall(line)
    if not annotations:
        return "no calculation"
    try:
        right = all(parse_arith(expr) == parse_arith(result) for expr, result in annotations)
    except ValueError:
        return "no calculation"
    return "wrong quantity" if right else "wrong arithmetic"


def first_wrong_steps(problems, completions, right):
    """For the wrong answers: Counter of their first wrong step ("step 1", ..., or "no wrong step"), Counter of that
    step's kind, and the lines themselves in order."""
    where, kinds, lines = Counter(), Counter(), []
    for p, text, ok in zip(problems, completions, right):
        if ok:
            continue
        verdicts, steps = check_steps(p, text), split_steps(text, prose=p.gsm8k)     # one verdict a step
        first = next((i for i, v in enumerate(verdicts) if not v), None)
        where["no wrong step" if first is None else f"step {first + 1}"] += 1
        if first is not None:
            kinds[step_kind(steps[first])] += 1
            lines.append(steps[first])
    return where, kinds, lines


def main(c: ErrorsConfig):
    models = [load_model(path) for path in c.ckpt_list]           # (model, tokenizer, checkpoint) each
    task, task_seed = task_of(models[0][2].get("config", {}))      # the first checkpoint's task
    test = make_problems(c.problems, "test", task_seed, task)
    by_pattern = defaultdict(list)                                 # "-+" -> indices of its problems
    for i, p in enumerate(test):
        by_pattern["".join(s.op for s in p.steps)].append(i)
    right, summaries = [], []                                      # one entry per checkpoint, in order
    for path, (model, tok, _) in zip(c.ckpt_list, models):
        completions = solve(model, tok, [p.question for p in test])
        right.append([extract_answer(text) == p.answer for text, p in zip(completions, test)])
        where, kinds, lines = first_wrong_steps(test, completions, right[-1])
        order = sorted(where, key=lambda k: (k == "no wrong step", k.split()[-1].zfill(4)))  # step 2 before step 10
        summaries.append(f"- `{path}`: {sum(where.values())} wrong; first wrong step: "
                         + ", ".join(f"{k}: {where[k]}" for k in order) + "; its kind: "
                         + ", ".join(f"{k}: {v}" for k, v in kinds.most_common()) + ". "
                         + ", ".join(f"`{line}`" for line in lines[:c.examples]))
    lines = [f"Greedy answers to {c.problems} held-out problems; accuracy by the operations of the problem, in order.",
             "", "| operations | problems | " + " | ".join(f"`{p}`" for p in c.ckpt_list) + " |",
             "|---|---|" + "---|" * len(c.ckpt_list)]
    for pat, idx in sorted(by_pattern.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| `{pat}` | {len(idx)} | " + " | ".join(f"{sum(r[i] for i in idx) / len(idx):.1%}" for r in right)
                     + " |")
    lines.append(f"| all | {c.problems} | " + " | ".join(f"**{sum(r) / c.problems:.1%}**" for r in right) + " |")
    lines += ["", "Wrong answers by their first wrong step (the task's step oracle), its kind, and some of those lines:",
              "", *summaries]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ErrorsConfig)))
