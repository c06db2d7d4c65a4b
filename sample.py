"""Watch a trained model solve word problems.

    python sample.py --question="Mia has 12 pens. She gets 5 more pens. How many pens does Mia have now?"
    python sample.py                       # type problems at the prompt (empty line or Ctrl-D to quit)
    python sample.py --test_problems=5     # held-out problems, with the step oracle's verdict on each line
    python sample.py --temperature=0.8 --num_samples=4 --question="..."
    python sample.py --test_problems=5 --tool=calculator   # the calculator writes each <<expr= result
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoreason.checkpoint import load_model
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.evaluate import solve
from nanoreason.tasks import check_steps, extract_answer, is_step, lines_before_answer, make_problems, task_from_config
from nanoreason.tools import make_tool


@dataclass
class SampleConfig:
    ckpt: str = "out/sft/ckpt.pt"
    question: str | None = None     # None: type problems at the prompt
    test_problems: int = 0
    num_samples: int = 1
    temperature: float = 0.0        # 0 = greedy
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0
    tool: str = "none"              # calculator: it writes the result of each <<expr= (nanoreason/tools.py)

    def __post_init__(self):
        check(self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples}")
        check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        check(self.question is None or self.question.strip(),
              "--question is empty: give a word problem, or leave --question out to type problems at the prompt")


def main(cfg: SampleConfig):
    model, tok, ckpt = load_model(cfg.ckpt)
    gen = torch.Generator().manual_seed(cfg.seed)
    opts = dict(max_new_tokens=cfg.max_new_tokens, greedy=cfg.temperature == 0, temperature=cfg.temperature or 1.0,
                top_k=cfg.top_k or None, top_p=cfg.top_p, generator=gen, tool=make_tool(cfg.tool, tok))

    def show(question, problem=None):
        for c in solve(model, tok, [question] * cfg.num_samples, **opts):
            verdicts = check_steps(problem, c) if problem else None
            print("-" * 60)
            steps = iter(verdicts or [])
            before = len(lines_before_answer(c))
            for i, line in enumerate(c.split("\n")):
                mark = ""
                if verdicts is not None and i < before and is_step(line, problem.gsm8k):
                    mark = "   <- step ok" if next(steps) else "   <- step WRONG"
                print(f"  {line}{mark}")
            if problem:
                got = extract_answer(c)
                print(f"  answer {got}, truth {problem.answer}: {'CORRECT' if got == problem.answer else 'wrong'}")

    if cfg.test_problems:
        tcfg = task_from_config(ckpt.get("config", {}))
        for p in make_problems(cfg.test_problems, "test", seed=cfg.seed + 12345, cfg=tcfg):
            print(f"\nQ: {p.question}")
            show(p.question, p)
    elif cfg.question is not None:
        show(cfg.question)
    else:
        print("Type a word problem (empty line or Ctrl-D to quit).")
        while True:
            try:
                q = input("Q: ").strip()
            except (EOFError, KeyboardInterrupt):        # end of input: leave quietly
                print()
                break
            if not q:
                break
            try:
                show(q)
            except ConfigError as e:                     # one bad question does not end the session
                print(f"error: {e}")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(SampleConfig)))
