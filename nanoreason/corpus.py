"""The pretraining corpus of train_base.py: synthetic "web" text from the task's world, with no question/answer
template and no instruction to reason.

Three kinds of document, drawn at the rates of a `CorpusMix`:

    story       people and their things, numbers in prose:
                "Zoe keeps 14 shells in a jar. Zoe likes shells. Her friend Omar has 6 shells."
    worksheet   arithmetic facts: "7+5=12\n12-3=9\n4*3=12"
    problem     a word problem from the *train* split, then worked steps (`worked` of them), only the final line
                `#### N` (`answer_only` of them), or nothing (the rest); sometimes under a heading ("Problem 3.")

Documents are separated by the end-of-text token and packed into blocks (nanoGPT). Problems come from
`tasks.stream("train")`, so no held-out test problem (split by the hash of its arithmetic) is ever in the corpus.
What a base model learns here decides what pure RL can find later: with worked steps in some of the text, a base
already *can* reason and RL only has to make it *choose* to (DeepSeek-AI 2025, R1-Zero).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from nanoreason.config import ConfigError
from nanoreason.tasks import ITEMS, NAMES, PRONOUNS, TaskConfig, stream

KINDS = ("stories", "worksheets", "problems")
HEADINGS = ["Problem {k}.", "Exercise {k}:", "Puzzle:", "Word problem", "Try this one."]
STORY = ["{n} keeps {x} {i} in a {box}.", "{n} likes {i}.", "{p} counts {x} {i}.", "{n} has {x} {i}.",
         "{p} shows the {i} to a friend.", "Her friend {m} has {y} {i}.", "{m} wants {y} {i} too.",
         "There are {x} {i} on the table.", "{n} and {m} play with {i}.", "{p} puts {y} {i} on the shelf."]
BOXES = ["box", "jar", "bag", "drawer", "basket", "tin"]


@dataclass
class CorpusMix:
    """What the corpus is made of: document kinds (fractions summing to 1), and how problems are shown."""
    stories: float = 0.1
    worksheets: float = 0.1
    problems: float = 0.8
    worked: float = 0.3           # of the problems: followed by worked steps (the GSM8K solution)
    answer_only: float = 0.5      # ... followed by only the final line "#### N"; the rest by nothing

    def __post_init__(self):
        fractions = {k: getattr(self, k) for k in (*KINDS, "worked", "answer_only")}
        for k, v in fractions.items():
            if not 0 <= v <= 1:
                raise ConfigError(f"--{k} must be a fraction in [0, 1], got {v}")
        if abs(sum(getattr(self, k) for k in KINDS) - 1) > 1e-6:
            raise ConfigError("--stories, --worksheets and --problems must sum to 1, got "
                              + " + ".join(f"{getattr(self, k):g}" for k in KINDS))
        if self.worked + self.answer_only > 1 + 1e-9:
            raise ConfigError(f"--worked + --answer_only must be <= 1 (the rest of the problems show nothing), got "
                              f"{self.worked:g} + {self.answer_only:g}")


def story(rng: random.Random, task: TaskConfig) -> str:
    n, m = rng.sample(NAMES, 2)
    p = PRONOUNS.get(n, "He")
    fill = dict(n=n, m=m, p=p, i=rng.choice(ITEMS), box=rng.choice(BOXES),
                x=rng.randint(2, task.max_value), y=rng.randint(2, task.max_value))
    first = rng.choice([t for t in STORY if t.startswith("{n}")])           # the story names its person first
    text = " ".join([first.format(**fill)] + [rng.choice(STORY).format(**fill) for _ in range(rng.randint(1, 4))])
    return text.replace("Her friend", "His friend") if p == "He" else text


def worksheet(rng: random.Random, task: TaskConfig) -> str:
    lines = []
    for _ in range(rng.randint(3, 8)):
        op = rng.choice(task.ops)
        if op == "+":
            a = rng.randint(2, task.max_value - 2)
            b = rng.randint(2, task.max_value - a)
            r = a + b
        elif op == "-":
            a = rng.randint(2, task.max_value)
            b = rng.randint(2, a)
            r = a - b
        elif op == "*":
            b = rng.randint(2, task.max_factor)
            a = rng.randint(1, max(1, task.max_value // b))
            r = a * b
        else:
            b = rng.randint(2, task.max_factor)
            r = rng.randint(1, max(1, task.max_value // b))
            a = r * b
        expr = f"{a}{op}{b}"
        lines.append(f"{expr}={r}")          # plain: the calculator form belongs to worked solutions
    return "\n".join(lines)


def problem_doc(p, rng: random.Random, mix: CorpusMix) -> str:
    u = rng.random()
    body = p.solution if u < mix.worked else f"#### {p.answer}" if u < mix.worked + mix.answer_only else ""
    head = rng.choice(HEADINGS).format(k=rng.randint(1, 40)) + "\n" if rng.random() < 0.3 else ""
    return f"{head}{p.question}\n{body}".rstrip("\n")


def documents(n: int, seed: int, task: TaskConfig, mix: CorpusMix, split: str = "train") -> list[str]:
    """`n` documents, deterministic in (seed, task, mix, split). The training corpus takes its problems from the
    train split only; split="test" makes held-out text (for perplexity) from held-out problems."""
    rng = random.Random(f"corpus:{split}:{seed}")
    problems = stream(split, seed=10_000 + seed, cfg=task)
    docs = []
    for _ in range(n):
        kind = rng.choices(KINDS, weights=[getattr(mix, k) for k in KINDS])[0]
        docs.append(story(rng, task) if kind == "stories" else worksheet(rng, task) if kind == "worksheets"
                    else problem_doc(next(problems), rng, mix))
    return docs


def pack(tok, docs: list[str]) -> torch.Tensor:
    """Documents -> one long (N,) tensor of token ids, each document followed by end-of-text (nanoGPT's train.bin)."""
    ids = []
    for d in docs:
        ids += tok.encode(d) + [tok.eot_id]
    return torch.tensor(ids, dtype=torch.long)


def random_blocks(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator):
    """(x, y), both (B, T): random windows of the packed corpus and the same windows shifted by one token."""
    i = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[j:j + block_size] for j in i.tolist()])
    y = torch.stack([data[j + 1:j + 1 + block_size] for j in i.tolist()])
    return x, y
