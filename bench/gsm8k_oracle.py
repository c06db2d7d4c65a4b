"""The step oracle on real GSM8K: does `check_steps` accept the gold solutions, and still catch a wrong result?

    python bench/gsm8k_oracle.py                                            # the project's small fixture
    python bench/gsm8k_oracle.py --data=../shared/data/gsm8k/train.jsonl    # the GSM8K training split; ~30 s
    python bench/gsm8k_oracle.py --data=... --ckpt=out/sft/ckpt.pt          # ... and what our model makes of it

For every problem in the file: the verdicts on its gold solution, and on a copy in which one annotated step (chosen
at random) claims a wrong result (the true one plus or minus 1, 2 or 10%, at least 1 away), written both inside the
annotation and after it. The wrong step must be judged wrong. With --ckpt, also: how many questions (and questions
with their gold solutions) fit the policy's context in its tokens, and its greedy accuracy on the held-out problems
(`--test_data`'s, or `--data`'s fixed 20%) whose questions fit. Writes out/gsm8k_oracle/table.md, with a few gold steps that still fail.
"""
from __future__ import annotations

import os
import random
import re
import statistics
from dataclasses import dataclass
from fractions import Fraction

from nanoreason.checkpoint import load_model
from nanoreason.config import parse_args, run_main
from nanoreason.evaluate import accuracy, prompt_text
from nanoreason.report import write_table
from nanoreason.tasks import (ANNOTATION, TaskConfig, check_steps, is_step, lines_before_answer, load_gsm8k,
                              make_problems, parse_arith, split_steps)

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data",
                       "gsm8k_tiny.jsonl")


@dataclass
class GSM8KOracleConfig:
    data: str = FIXTURE
    out_dir: str = "out/gsm8k_oracle"
    seed: int = 0
    show: int = 5                     # gold steps that fail, printed in the table
    ckpt: str = ""                    # a policy checkpoint to try on the file
    test_data: str = ""               # ... on this file's problems ("": the fixed 20% held out of --data)
    eval_problems: int = 256


def fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"


def perturb(solution: str, rng: random.Random):
    """(the solution with one annotated step's result made wrong, that step's index), or None if no step parses."""
    lines = solution.split("\n")
    rows = [i for i, line in enumerate(lines_before_answer(solution)) if is_step(line, prose=True)]   # step k's line
    candidates = []
    for k, i in enumerate(rows):
        m = ANNOTATION.search(lines[i])
        try:
            candidates.append((k, i, m, parse_arith(m[2])))
        except ValueError:
            continue
    if not candidates:
        return None
    k, i, m, value = rng.choice(candidates)
    wrong = value + rng.choice([-1, 1]) * max(Fraction(1), rng.choice([Fraction(1), Fraction(2), abs(value) / 10]))
    after = re.sub(r"^(\$?)" + re.escape(m[2].strip()), lambda g: g[1] + fmt(wrong), lines[i][m.end():], count=1)
    lines[i] = lines[i][:m.start()] + f"<<{m[1]}={fmt(wrong)}>>" + after
    return "\n".join(lines), k


def main(c: GSM8KOracleConfig):
    problems = load_gsm8k(c.data)
    rng = random.Random(c.seed)
    gold_ok = steps = steps_ok = tried = caught = 0
    failing = []
    for p in problems:
        v = check_steps(p, p.solution)
        gold_ok += all(v)
        steps += len(v)
        steps_ok += sum(v)
        failing += [(p, line) for line, ok in zip(split_steps(p.solution, True), v) if not ok]
        hit = perturb(p.solution, rng)
        if hit:
            text, k = hit
            tried += 1
            caught += not check_steps(p, text)[k]
    n = len(problems)
    command = f"python bench/gsm8k_oracle.py --data={c.data}" + (f" --ckpt={c.ckpt}" if c.ckpt else "")
    lines = [f"`{command}`: {n} problems.", "",
             "| | |", "|---|---|",
             f"| gold solutions judged right in every step | {gold_ok / n:.1%} ({gold_ok} of {n}) |",
             f"| gold steps judged right | {steps_ok / max(steps, 1):.1%} ({steps_ok} of {steps}) |",
             f"| a wrong result injected into one gold step: that step judged wrong | {caught / max(tried, 1):.1%} "
             f"({caught} of {tried}) |"]
    if failing:
        lines += ["", f"Gold steps judged wrong (the first {min(c.show, len(failing))} of {len(failing)}):", ""]
        lines += [f"- `{line.strip()}`" for _, line in failing[:c.show]]
    if c.ckpt:
        lines += ["", *policy_fit(c)]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


def policy_fit(c: GSM8KOracleConfig) -> list[str]:
    """Lines on how the policy at c.ckpt reads these problems, and its greedy accuracy where it can."""
    model, tok, _ = load_model(c.ckpt)
    problems, B = load_gsm8k(c.data), model.cfg.block_size
    q = [len(tok.encode(prompt_text(p.question))) for p in problems]
    both = [n + len(tok.encode(p.solution)) + 1 for n, p in zip(q, problems)]
    test = [p for p in make_problems(c.eval_problems, "test", 0, TaskConfig(data=c.data, test_data=c.test_data))
            if len(tok.encode(prompt_text(p.question))) < B - 16][:c.eval_problems]
    acc = accuracy(model, tok, test, max_new_tokens=64)[0] if test else float("nan")
    return [f"`{c.ckpt}` (block_size {B}): questions are {statistics.median(q):.0f} of its tokens (median); "
            f"{sum(n < B for n in q) / len(q):.1%} of them fit its context, {sum(n <= B for n in both) / len(q):.1%} "
            f"with their gold solution. Greedy accuracy on the {len(test)} held-out problems whose question fits: "
            f"{acc:.1%}."]


if __name__ == "__main__":
    run_main(lambda: main(parse_args(GSM8KOracleConfig)))
