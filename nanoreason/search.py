"""Test-time compute: what k samples per problem buy.

    pass@k   some of k samples is right (the unbiased estimator of Chen et al. 2021 from n >= k samples)
    maj@k    the most common final answer among k samples is right (self-consistency, Wang et al. 2022)
    maj@1    one greedy answer: the plain held-out accuracy
"""
from __future__ import annotations

from collections import Counter
from math import comb

from nanoreason.config import ConfigError
from nanoreason.evaluate import prompt_text, solve
from nanoreason.tasks import extract_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k draws without replacement from n samples, c of them correct, is correct)
    = 1 - C(n - c, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ConfigError(f"pass@k needs 1 <= k <= n samples, got k={k}, n={n}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_answer(answers: list):
    """The most common non-missing answer (ties: the one seen first); None if every answer is missing."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == best)


def sample_texts(model, tok, problems, k: int, temperature: float = 1.0, prefix=(),
                 max_new_tokens: int = 96, tool=None) -> list[list[str]]:
    """k sampled completions per problem: a list (one per problem) of k texts (`tool`: nanoreason.tools)."""
    texts = solve(model, tok, [p.question for p in problems for _ in range(k)], max_new_tokens=max_new_tokens,
                  greedy=False, temperature=temperature, prefix=prefix, tool=tool)
    return [texts[i * k:(i + 1) * k] for i in range(len(problems))]


def sample_answers(model, tok, problems, k: int, temperature: float = 1.0, prefix=(), max_new_tokens: int = 96):
    """k sampled final answers per problem: a list (one per problem) of k answers (None where unreadable)."""
    return [[extract_answer(t) for t in ts] for ts in sample_texts(model, tok, problems, k, temperature, prefix,
                                                                     max_new_tokens)]


def sample_metrics(problems, answers: list[list], k: int) -> dict:
    """maj@k and pass@k (unbiased from all n samples) over the problems, from `sample_answers`' output."""
    n = len(answers[0])
    if k > n:
        raise ConfigError(f"k={k} is larger than the {n} samples drawn per problem")
    maj = sum(majority_answer(a[:k]) == p.answer for p, a in zip(problems, answers)) / len(problems)
    pk = sum(pass_at_k(n, sum(x == p.answer for x in a), k) for p, a in zip(problems, answers)) / len(problems)
    return {f"maj@{k}": maj, f"pass@{k}": pk}


def weighted_vote(answers: list, scores: list[float]):
    """Verifier-weighted majority vote (Uesato et al. 2022; Li et al. 2023): the answer whose samples' scores sum
    highest, argmax_a sum_{i: a_i = a} s_i. Unlike best-of-N it keeps the vote's count of repeated answers."""
    totals = {}
    for a, s in zip(answers, scores):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + s
    return max(totals, key=totals.get) if totals else None


def pick(answers: list, scores: list[float] | None = None, weighted: bool = False):
    """Majority vote (no scores), the answer of the highest-scoring sample (rerank / best-of-N), or with `weighted`
    the verifier-weighted vote."""
    if scores is None:
        return majority_answer(answers)
    if weighted:
        return weighted_vote(answers, scores)
    return answers[max(range(len(answers)), key=lambda i: scores[i])]


def best_of_n(problems, answers: list[list], scores: list[list[float]] | None, n: int, weighted: bool = False) -> float:
    """Accuracy of picking one answer among n samples, averaged over the k // n disjoint groups of n that each
    problem's k samples hold (a lower-variance estimate than one group). scores None: majority vote."""
    k = len(answers[0])
    if not 0 < n <= k:
        raise ConfigError(f"best-of-{n} needs 1 <= n <= k, the {k} samples drawn per problem")
    hits = []
    for i, p in enumerate(problems):
        for g in range(0, k - n + 1, n):
            sc = scores[i][g:g + n] if scores is not None else None
            hits.append(pick(answers[i][g:g + n], sc, weighted) == p.answer)
    return sum(hits) / len(hits)


# ---------------------------------------------------------------------------------------------------------------
# Searching with a process reward model, and diverse selection

def prm_beam_search(policy, tok, step_score, problems, beam_width: int = 4, expand: int = 4, max_steps: int = 6,
                    temperature: float = 1.0, max_new_tokens: int = 64) -> tuple[list[str], list[int]]:
    """Step-level beam search guided by a PRM (Snell et al. 2024; Wang et al. 2024). Each beam is a prefix of whole
    steps. Every round, each beam is continued `expand` times by the policy, one line each (sampling stops at the
    line's end); candidates that reached the `####` line are finished, the others compete by
    `step_score(problems, texts) -> scores` and the best `beam_width` per problem survive. Returns, per problem, the
    best-scoring finished text and the number of tokens sampled for it (the cost to compare with best-of-N)."""
    if beam_width < 1 or expand < 1:
        raise ConfigError(f"beam_width and expand must be >= 1, got {beam_width}, {expand}")
    beams = [[""] for _ in problems]
    finished = [[] for _ in problems]                        # (score, text)
    sampled = [0] * len(problems)
    line_ends = tok.line_end_ids()                           # sampling stops at the end of a line

    def question(i: int, pre: str) -> str:                  # the problem, then the beam's steps so far
        return problems[i].question.strip() + ("\n" + pre.rstrip("\n") if pre else "")
    for _ in range(max_steps):
        jobs = [(i, pre) for i, bs in enumerate(beams) for pre in bs for _ in range(expand)]
        if not jobs:
            break
        conts = solve(policy, tok, [question(i, pre) for i, pre in jobs], max_new_tokens=max_new_tokens,
                      greedy=False, temperature=temperature, stop_ids=line_ends)
        cands = [[] for _ in problems]
        for (i, pre), cont in zip(jobs, conts):
            sampled[i] += len(tok.encode(cont))
            line = cont.split("\n")[0]
            done = line.strip().startswith("####") or "\n" not in cont        # the answer line, or no more lines
            text = pre + line + ("" if done else "\n")
            if not done and len(tok.encode(prompt_text(question(i, text)))) >= policy.cfg.block_size - 1:
                done = True                                  # no room left in the context to continue this beam
            if text not in [t for t, _ in cands[i]]:
                cands[i].append((text, done))
        flat = [(i, t, done) for i, cs in enumerate(cands) for t, done in cs]
        scores = step_score([problems[i] for i, _, _ in flat], [t for _, t, _ in flat])
        beams = [[] for _ in problems]
        ranked = sorted(zip(scores, flat), key=lambda x: -x[0])
        for s, (i, t, done) in ranked:
            if done:
                finished[i].append((s, t))
            elif len(beams[i]) < beam_width:
                beams[i].append(t)
    return [max(f)[1] if f else (b[0] if b else "") for f, b in zip(finished, beams)], sampled


def jaccard(a: str, b: str) -> float:
    x, y = set(a.split()), set(b.split())
    return len(x & y) / max(1, len(x | y))


def mmr_select(texts: list[str], relevance: list[float], k: int, lam: float = 0.5, sim=jaccard) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998): greedily pick k indices maximising
    lam * relevance_i - (1 - lam) * max_{j picked} sim(text_i, text_j): good samples that are not all the same."""
    if not 0 < k <= len(texts):
        raise ConfigError(f"MMR needs 1 <= k <= {len(texts)} candidates, got k={k}")
    picked, left = [], list(range(len(texts)))
    while len(picked) < k:
        best = max(left, key=lambda i: lam * relevance[i] - (1 - lam) * max((sim(texts[i], texts[j]) for j in picked),
                                                                             default=0.0))
        picked.append(best)
        left.remove(best)
    return picked
