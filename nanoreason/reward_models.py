"""Outcome and process reward models: our GPT, trained on the policy's own samples to judge answers and steps.

    ORM (Cobbe et al. 2021)   one label per answer: is the final answer right?
    PRM (Lightman et al. 2023; Uesato et al. 2022)   one label per step (a line of the answer).

How a label is read from the network (`readout`):
    likelihood  (default) the verifier's probability of the span's own tokens, s = prod_t p(x_t | x_<t) over the
                answer (ORM) or over one step's line (PRM): "would I have written this?" Trained with binary
                cross-entropy on s: y = 1 is next-token training on the span, y = 0 pushes the span's probability
                down (unlikelihood, Welleck et al. 2019); verification as next-token prediction (Zhang et al. 2024).
    head        the `reward_head` on the last hidden state: the ORM on every completion token (a value-like target)
                read at the last one; the PRM on the token that ends each step's line (`rewards.step_end_tokens`).
                A tiny network does not re-check a step's arithmetic at the end of its line, so this read-out stays
                near chance here (docs/reward_models.md); it is kept for the comparison.

Where the PRM's step labels come from (`labels`):
    oracle      `check_steps`: exact step truth, which our task has and real data does not
    mc_hard     Math-Shepherd (Wang et al. 2024): from each step's prefix the policy completes `mc_n` times;
                the step is good if any completion reaches the right answer
    mc_soft     ... the fraction that does (a soft label in [0, 1])
    perturbed   no sampling at all: reference solutions are positives; a copy with one step's result changed gives
                that step a negative label (the steps before it stay positive; the rest is cut)

Scores are probabilities: s itself (likelihood) or the sigmoid of the head. ORM: one number per answer. PRM: one
per step, aggregated by min, prod or last. A span cut by block_size is not scored (an ORM answer cut that way: 0).
"""
from __future__ import annotations

import random
import re
from itertools import islice

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nanoreason import distributed
from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import ConfigError
from nanoreason.evaluate import prompt_text, solve
from nanoreason.model import GPT
from nanoreason.rl import masked_mean, token_logprobs
from nanoreason.rewards import step_end_tokens
from nanoreason.rollouts import collect
from nanoreason.tasks import Problem, check_steps, extract_answer, is_step, lines_before_answer, split_steps, stream
from nanoreason.tokenizer import Tokenizer
from nanoreason.training import minibatch_epochs

LABELS = ("oracle", "mc_hard", "mc_soft", "perturbed")
STEP_REDUCTIONS = ("min", "prod", "last")
READOUTS = ("likelihood", "head")

# An example: (problem, completion text, labels). ORM: labels = [outcome]. PRM: one label per step of the text.


def encode(tok: Tokenizer, problem: Problem, text: str):
    """(prompt ids, completion ids + eot, index in the completion of each step's end token)."""
    q = tok.encode(prompt_text(problem.question))
    body = tok.encode(text)
    ends = step_end_tokens([tok.enc.decode_single_token_bytes(t) for t in body], problem.gsm8k)
    return q, body + [tok.eot_id], ends


def padded_ids(tok: Tokenizer, rows, block_size: int):
    """Right-padded (B, T) prompt + completion ids of `encode`d rows, cut at block_size."""
    T = min(block_size, max(len(q) + len(c) for q, c, _ in rows))
    ids = torch.full((len(rows), T), tok.eot_id, dtype=torch.long)
    for i, (q, c, _) in enumerate(rows):
        seq = (q + c)[:T]
        ids[i, :len(seq)] = torch.tensor(seq)
    return ids


def batch(tok: Tokenizer, examples, kind: str, block_size: int):
    """Right-padded ids (B, T), label targets (B, T) and a mask (B, T) of the positions that carry a label."""
    rows = [encode(tok, p, t) for p, t, _ in examples]
    ids = padded_ids(tok, rows, block_size)
    T = ids.shape[1]
    target, mask = torch.zeros(ids.shape), torch.zeros(ids.shape)
    for i, ((q, c, ends), (_, _, labels)) in enumerate(zip(rows, examples)):
        if kind == "orm":                                  # every completion token predicts the outcome
            pos = list(range(len(q), min(len(q) + len(c), T)))
            target[i, pos], mask[i, pos] = labels[0], 1.0
        else:                                              # each step's end token predicts that step's label
            for e, y in zip(ends, labels):
                if len(q) + e < T:
                    target[i, len(q) + e], mask[i, len(q) + e] = y, 1.0
    return ids, target, mask


def spans(c: list, ends: list, kind: str) -> list[tuple[int, int]]:
    """The completion-token spans (first, last) that carry the labels: ORM the whole completion (eot included),
    PRM each step's line up to its end token."""
    if kind == "orm":
        return [(0, len(c) - 1)]
    return [(ends[k - 1] + 1 if k else 0, e) for k, e in enumerate(ends)]


def span_batch(tok: Tokenizer, examples, kind: str, block_size: int):
    """For the likelihood read-out: ids (B, T), the span index of every position (B, T; -1 outside any span), label
    targets (B, S) and a mask (B, S) of the spans that fit in block_size."""
    rows = [encode(tok, p, t) for p, t, _ in examples]
    ids = padded_ids(tok, rows, block_size)
    T, S = ids.shape[1], max(1, max(len(y) for _, _, y in examples))
    span = torch.full(ids.shape, -1, dtype=torch.long)
    target, mask = torch.zeros(len(rows), S), torch.zeros(len(rows), S)
    for i, ((q, c, ends), (_, _, labels)) in enumerate(zip(rows, examples)):
        for k, ((a, b), y) in enumerate(zip(spans(c, ends, kind), labels)):
            if len(q) + b < T:
                span[i, len(q) + a:len(q) + b + 1] = k
                target[i, k], mask[i, k] = y, 1.0
    return ids, span, target, mask


def span_logprobs(model: GPT, ids, span, S: int):
    """log p(span's tokens | everything before) for each of S spans: (B, S), summed from the token log-probs."""
    logits = model(ids)                                                               # (B, T, V)
    logp = token_logprobs(logits[:, :-1].float(), ids[:, 1:])                         # (B, T-1): of token t + 1
    where = span[:, 1:] + 1                                                           # (B, T-1): 0 = no span
    out = torch.zeros(ids.shape[0], S + 1, device=ids.device).scatter_add(1, where, logp * (where > 0))
    return out[:, 1:]                                                                 # (B, S)


def likelihood_loss(model: GPT, ids, span, target, mask):
    """Binary cross-entropy of s = p(span) against the labels: -[y log s + (1 - y) log(1 - s)]."""
    logs = span_logprobs(model, ids, span, target.shape[1]).clamp(max=-1e-6)          # log s < 0 (s = 1 has no
                                                                                      # log(1 - s); its gradient is 0)
    bce = -(target * logs + (1 - target) * torch.log(-torch.expm1(logs)))             # log(1 - s) = log(-expm1(log s))
    return masked_mean(bce, mask)


def rm_loss(model: GPT, ids, target, mask):
    """Head read-out: binary cross-entropy of the reward head's logits at the labelled positions (soft labels allowed)."""
    logits = distributed.unwrap(model).rewards(model(ids, return_hidden=True))        # (B, T); through DDP's forward
    return masked_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), mask)


@torch.no_grad()
def score(model: GPT, tok: Tokenizer, problems, texts, kind: str, batch_size: int = 128) -> list:
    """ORM: one probability per answer. PRM: a list of step probabilities per answer. Read the way the model was
    trained (`model.readout`, set by `fit` and `load_reward_model`)."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        ps, ts = problems[i:i + batch_size], texts[i:i + batch_size]
        rows = [encode(tok, p, t) for p, t in zip(ps, ts)]
        if getattr(model, "readout", "head") == "likelihood":
            spans_of = [spans(c, ends, kind) for _, c, ends in rows]
            ids, span, _, mask = span_batch(tok, [(p, t, [0.0] * len(sp)) for p, t, sp in zip(ps, ts, spans_of)],
                                            kind, model.cfg.block_size)
            probs = span_logprobs(model, ids.to(dev), span.to(dev), mask.shape[1]).exp().cpu()
            for j, m in enumerate(mask):
                got = [probs[j, k].item() for k in range(len(spans_of[j])) if m[k] > 0]
                out.append((got[0] if got else 0.0) if kind == "orm" else got)
            continue
        ids = padded_ids(tok, rows, model.cfg.block_size)
        probs = torch.sigmoid(model.rewards(model.hidden(ids.to(dev)))).cpu()
        for j, (q, c, ends) in enumerate(rows):
            last = min(len(q) + len(c), ids.shape[1]) - 1
            out.append(probs[j, last].item() if kind == "orm" else
                       [probs[j, len(q) + e].item() for e in ends if len(q) + e < ids.shape[1]])
    return out


def reduce_steps(step_scores: list[float], how: str) -> float:
    """A PRM's step probabilities -> one score: min (the weakest step), prod (all steps right), last."""
    if not step_scores:
        return 0.0
    if how == "min":
        return min(step_scores)
    if how == "prod":
        return float(torch.tensor(step_scores).prod())
    if how == "last":
        return step_scores[-1]
    raise ConfigError(f"unknown step reduction {how!r}; choose from {', '.join(STEP_REDUCTIONS)}")


@torch.no_grad()
def policy_samples(policy: GPT, tok: Tokenizer, problems, k: int, temperature: float, max_new_tokens: int, seed: int):
    """k sampled answers per problem: (problems repeated k times, texts, outcome 0/1 per answer)."""
    reps = [p for p in problems for _ in range(k)]
    b = collect(policy, tok, reps, {"outcome": 1.0}, "none", max_new_tokens, temperature,
                torch.Generator(device=next(policy.parameters()).device).manual_seed(seed))
    return reps, b.texts, b.correct.tolist()


# ---------------------------------------------------------------------------------------------------------------
# Step labels

def oracle_labels(problem: Problem, text: str) -> list[float]:
    return [float(v) for v in check_steps(problem, text)]


@torch.no_grad()
def mc_hits(policy: GPT, tok: Tokenizer, items, n: int, temperature: float = 1.0,
            max_new_tokens: int = 64) -> list[list[list[float]]]:
    """Math-Shepherd rollouts for each (problem, text): for each step k, n completions by the policy from the prompt
    plus steps 1..k; returns, per item and step, the n outcomes (1 = reached the right answer)."""
    queries, owners = [], []
    for i, (p, t) in enumerate(items):
        lines = [ln for ln in lines_before_answer(t) if ln.strip()]
        for k, line in enumerate(lines):             # the text up to and including each step (prose kept)
            if is_step(line, p.gsm8k):
                queries += [(p, p.question.strip() + "\n" + "\n".join(lines[:k + 1]))] * n   # solve() adds a newline
                owners.append(i)
    texts = solve(policy, tok, [q for _, q in queries], max_new_tokens=max_new_tokens, greedy=False,
                  temperature=temperature) if queries else []
    right = [float(extract_answer(t) == p.answer) for (p, _), t in zip(queries, texts)]
    hits = [[] for _ in items]
    for j, i in enumerate(owners):
        hits[i].append(right[j * n:(j + 1) * n])
    return hits


def mc_label(step_hits: list[float], soft: bool) -> float:
    """Hard estimation: 1 if any completion from this step reached the answer; soft: the fraction that did."""
    return sum(step_hits) / len(step_hits) if soft else float(any(step_hits))


def perturbed_examples(problems, seed: int = 0) -> list[tuple]:
    """Each reference solution as a positive example, and a copy whose step k has a wrong result (k at random; the
    steps after it are cut) with labels [1, ..., 1, 0]."""
    rng, out = random.Random(seed), []
    for p in problems:
        steps = split_steps(p.solution, p.gsm8k)
        if not steps:                                  # GSM8K: a solution without an annotated step
            continue
        out.append((p, p.solution, [1.0] * len(steps)))
        k = rng.randrange(len(steps))
        m = re.search(r"=(-?\d+)>>(-?\d+)", steps[k])
        if m:
            wrong = str(int(m[1]) + rng.choice([-2, -1, 1, 2]))
            bad = steps[k][:m.start()] + f"={wrong}>>{wrong}" + steps[k][m.end():]
            out.append((p, "\n".join(steps[:k] + [bad]) + "\n", [1.0] * k + [0.0]))
    return out


def reference_examples(task, n: int, seed: int, kind: str) -> list[tuple]:
    """The reference solutions of `n` training problems as positive examples: exact and free (no sampling), they
    teach the verifier what a right step looks like."""
    return [(p, p.solution, [1.0] if kind == "orm" else [1.0] * len(split_steps(p.solution, p.gsm8k)))
            for p in islice(stream("train", seed, task), n)]


# ---------------------------------------------------------------------------------------------------------------
# Training and evaluation

def fit(model: GPT, tok: Tokenizer, examples, kind: str, epochs: int, batch_size: int, lr: float, log=None,
        seed: int = 0, dtype: str = "float32", readout: str = "likelihood") -> list[float]:
    """Train the whole model on labelled examples for `readout` (`likelihood_loss` or the head's `rm_loss`), and
    record the read-out on the model (`model.readout`); returns the batch losses.
    Under torchrun every rank passes the same examples and learns from its share of each minibatch (DDP)."""
    if readout not in READOUTS:
        raise ConfigError(f"unknown readout {readout!r}; choose from {', '.join(READOUTS)}")
    model.readout = readout
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    ddp = distributed.wrap(model, distributed.world_size(),                       # a reward model has no critic
                           heads=("reward",) if readout == "head" else ())
    dev = next(model.parameters()).device
    bar = tqdm(total=epochs * ((len(examples) + batch_size - 1) // batch_size), desc=f"{kind} training",
               disable=distributed.rank() > 0)

    def loss_fn(idx):
        rows = [examples[i] for i in idx]
        if readout == "likelihood":
            ids, span, target, mask = span_batch(tok, rows, kind, model.cfg.block_size)
            return likelihood_loss(ddp, ids.to(dev), span.to(dev), target.to(dev), mask.to(dev)), int(mask.sum())
        ids, target, mask = batch(tok, rows, kind, model.cfg.block_size)
        return rm_loss(ddp, ids.to(dev), target.to(dev), mask.to(dev)), int(mask.sum())

    def on_step(losses):
        if log is not None and len(losses) % 10 == 0:
            log.log(step=len(losses), loss=sum(losses[-10:]) / 10)
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    losses = minibatch_epochs(ddp, optimizer, len(examples), epochs, batch_size, loss_fn,
                              generator=torch.Generator().manual_seed(seed), what=f"{kind} loss", on_step=on_step,
                              dtype=dtype)
    bar.close()
    return losses


def majority_baseline(labels) -> float:
    """Accuracy of always guessing the more common 0/1 label: what a reward model's verdicts must beat."""
    pos = sum(labels)
    return max(pos, len(labels) - pos) / max(1, len(labels))


def step_accuracy(model: GPT, tok: Tokenizer, problems, texts) -> float:
    """Fraction of steps where the PRM's verdict (p > 0.5) agrees with the oracle."""
    agree = total = 0
    for p, t, sc in zip(problems, texts, score(model, tok, problems, texts, "prm")):
        for y, s in zip(oracle_labels(p, t), sc):
            agree += int((s > 0.5) == bool(y))
            total += 1
    return agree / max(1, total)


def outcome_accuracy(model: GPT, tok: Tokenizer, problems, texts, correct) -> float:
    """Fraction of answers where the ORM's verdict (p > 0.5) agrees with the final-answer check."""
    s = score(model, tok, problems, texts, "orm")
    return sum(int((x > 0.5) == bool(c)) for x, c in zip(s, correct)) / max(1, len(s))


def load_reward_model(path: str, kind: str, tok: Tokenizer, device="cpu", task=None) -> GPT:
    """The `kind` ("orm" or "prm") reward model at `path` (the `--<kind>_ckpt` option), checked to be one, to share
    the policy's tokenizer and (given the policy's `task`) to have been trained on the same task config."""
    model, rm_tok, ckpt = load_model(path, kind="reward_model", device=device)
    theirs = task_of(ckpt.get("config", {}))[0]
    if task is not None and theirs != task:
        diff = ", ".join(f"{k}={v} (policy: {getattr(task, k)})" for k, v in vars(theirs).items()
                         if getattr(task, k) != v)
        raise ConfigError(f"{path}: this reward model was trained on another task config than the policy: {diff}")
    got = ckpt["extra"].get("rm")
    if got != kind:
        raise ConfigError(f"{path}: is a {got} checkpoint, passed as --{kind}_ckpt: it needs a {kind.upper()} "
                          f"(train_{kind}.py)")
    if rm_tok.to_dict() != tok.to_dict():
        raise ConfigError(f"{path}: this reward model has a different tokenizer than the policy")
    model.readout = ckpt["extra"].get("readout", "head")          # checkpoints from before the read-out choice
    return model


def prm_step_scorer(path: str, tok: Tokenizer, device="cpu", task=None):
    """A learned PRM as the `steps` reward of an RL trainer: (problems, texts) -> per-step probabilities."""
    prm = load_reward_model(path, "prm", tok, device, task)
    return lambda problems, texts: score(prm, tok, problems, texts, "prm")
