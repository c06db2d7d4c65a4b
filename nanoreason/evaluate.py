"""Held-out accuracy: greedy-decode every problem and compare `extract_answer` with the truth."""
from __future__ import annotations

import torch
from tqdm import tqdm

from nanoreason.model import GPT
from nanoreason.rewards import format_reward
from nanoreason.sampling import generate
from nanoreason.tasks import Problem, check_steps, extract_answer, shows_work
from nanoreason.tokenizer import Tokenizer
from nanoreason.tools import calls_per_answer


def prompt_text(question: str) -> str:
    """The prompt format shared by every stage: the question, then a newline; the solution follows."""
    return question.strip() + "\n"


def solve(model: GPT, tok: Tokenizer, questions: list[str], max_new_tokens: int = 96, batch_size: int = 256,
          prefix: list[int] = (), **sampling) -> list[str]:
    """Completions (decoded text) for `questions`; greedy unless sampling options say otherwise. `prefix`: token ids
    put before every prompt (a control token: return-conditioned RL asks for a correct answer with it)."""
    sampling.setdefault("greedy", True)
    out = []
    for i in range(0, len(questions), batch_size):
        prompts = [list(prefix) + tok.encode(prompt_text(q)) for q in questions[i:i + batch_size]]
        r = generate(model, prompts, max_new_tokens, tok.eot_id, **sampling)
        out += [tok.decode(ids) for ids in r.completion_ids()]
    return out


@torch.no_grad()
def accuracy(model: GPT, tok: Tokenizer, problems: list[Problem], **kw) -> tuple[float, list[str]]:
    """(fraction of problems whose extracted answer is right, the completions)."""
    completions = solve(model, tok, [p.question for p in problems], **kw)
    correct = [extract_answer(c) == p.answer for c, p in zip(completions, problems)]
    return sum(correct) / max(len(problems), 1), completions


def completion_stats(tok: Tokenizer, problems: list[Problem], completions: list[str]) -> dict:
    """What answers to `problems` look like: accuracy; format rate (they end in one `#### N` line); worked-step rate
    (at least one calculation line before the answer, right or wrong: `shows_work`); reasoning rate (at least one
    calculation line the step oracle accepts); mean response length in tokens (with the end-of-text); calculator calls
    (`<<expr=`) per answer. What a base model does when shown a question, and what pure RL changes."""
    n = max(len(problems), 1)
    return {"accuracy": sum(extract_answer(c) == p.answer for c, p in zip(completions, problems)) / n,
            "format_rate": sum(format_reward(c) for c in completions) / n,
            "worked_rate": sum(shows_work(c) for c in completions) / n,
            "reasoning_rate": sum(any(check_steps(p, c)) for c, p in zip(completions, problems)) / n,
            "response_length": sum(len(tok.encode(c)) + 1 for c in completions) / n,
            "tool_calls": calls_per_answer(completions)}


@torch.no_grad()
def answer_stats(model: GPT, tok: Tokenizer, problems: list[Problem], **kw) -> dict:
    """`completion_stats` of the greedy answers to `problems`."""
    return completion_stats(tok, problems, solve(model, tok, [p.question for p in problems], **kw))


@torch.no_grad()
def sampled_work_stats(model: GPT, tok: Tokenizer, problems: list[Problem], k: int = 4, temperature: float = 1.0,
                       max_new_tokens: int = 64) -> dict:
    """What a model's *samples* offer RL to select: the share of k sampled answers per problem that show worked steps
    (`shows_work`), and how often those and the rest are right. Pure RL can select worked steps only if they pay."""
    texts = solve(model, tok, [p.question for p in problems for _ in range(k)], max_new_tokens=max_new_tokens,
                  greedy=False, temperature=temperature)
    pairs = [(shows_work(t), extract_answer(t) == p.answer) for p, t in zip([p for p in problems for _ in range(k)],
                                                                            texts)]
    worked, bare = [r for w, r in pairs if w], [r for w, r in pairs if not w]
    return {"sampled_worked": len(worked) / len(pairs), "worked_right": sum(worked) / max(1, len(worked)),
            "bare_right": sum(bare) / max(1, len(bare))}


def evaluate_and_show(model: GPT, tok: Tokenizer, problems: list[Problem], step: int, show: int = 2,
                      stats: bool = False, **kw) -> float | dict:
    """Held-out accuracy, printed above the progress bar with the first `show` questions and their completions.
    `stats`: return (and print) all of `completion_stats` instead."""
    acc, completions = accuracy(model, tok, problems, **kw)
    shown = "".join(f"\n  Q: {p.question}\n  A: {c!r}" for p, c in zip(problems[:show], completions))
    more = ""
    if stats:
        s = completion_stats(tok, problems, completions)
        more = (f"; format {s['format_rate']:.1%}, worked steps {s['worked_rate']:.1%}, "
                f"reasoning {s['reasoning_rate']:.1%}, "
                f"{s['response_length']:.1f} tokens per answer")
    tqdm.write(f"step {step}: held-out greedy accuracy {acc:.1%} on {len(problems)} problems{more}{shown}")
    return s if stats else acc
