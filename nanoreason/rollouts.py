"""Rollouts for the RL trainers: sample completions, score them, and re-run the model over them.

    batch = collect(policy, tok, problems, weights, ...)    # sample + decode + rewards on tokens
    logp, entropy, h = completion_forward(model, batch.ids, batch.mask, batch.P)   # (B, T) each, h (B, T, C)

Token t of a completion is predicted by the hidden state at sequence position P-1+t (P = padded prompt length),
so the log-prob, the entropy and the value of "state before token t" all come from h[:, P-1+t].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nanoreason.distributed import rank_seed, shard, unwrap
from nanoreason.evaluate import prompt_text
from nanoreason.model import GPT
from nanoreason.rewards import compound_reward, format_reward, outcome_reward, step_end_tokens, token_rewards
from nanoreason.rl import hidden_logprobs, rewards_on_actions
from nanoreason.sampling import Rollout, generate
from nanoreason.tasks import check_steps, split_steps, stream
from nanoreason.tokenizer import Tokenizer


@dataclass
class Batch:
    rollout: Rollout
    ids: torch.Tensor           # (B, P+T) prompt + completion
    mask: torch.Tensor          # (B, P+T) attention mask
    P: int                      # padded prompt length
    completion_mask: torch.Tensor   # (B, T) float: 1 = a token the model wrote (an action); every loss term's mask
    scores: torch.Tensor        # (B, T) task rewards placed on tokens (steps on step ends, sequence on last token)
    correct: torch.Tensor       # (B,) outcome 0/1
    formatted: torch.Tensor     # (B,) format 0/1
    n_steps: torch.Tensor       # (B,) reasoning lines
    texts: list

    @property
    def tool_mask(self):        # (B, T) float: 1 = written by the tool (context, in `mask`, not an action)
        r = self.rollout
        return None if r is None or r.tool_mask is None else r.tool_mask.float()


@torch.no_grad()
def collect(policy: GPT, tok: Tokenizer, problems, weights: dict, shaping: str = "none", max_new_tokens: int = 64,
            temperature: float = 1.0, generator=None, prefix: list[int] = (), step_scorer=None, tool=None,
            with_logprobs: bool = False) -> Batch:
    """Sample one completion per problem (repeat a problem for several), decode it and put its rewards on tokens.
    `prefix`: token ids before every prompt (e.g. a control token). `step_scorer(problems, texts)`: per-step rewards
    from a learned PRM for the `steps` reward, instead of the oracle's. `tool` (nanoreason.tools): its tokens stay in
    the context (`mask`) but not in `completion_mask`, and a reward on one moves to the model's token before it.
    `with_logprobs`: keep the sampler's log-probs and hidden states in `batch.rollout` (see sampling.generate)."""
    prompts = [list(prefix) + tok.encode(prompt_text(p.question)) for p in problems]
    r = generate(policy, prompts, max_new_tokens, tok.eot_id, temperature=temperature, generator=generator, tool=tool,
                 with_logprobs=with_logprobs)
    ids, mask = r.sequences()
    T = r.completion.shape[1]
    scores, comps = torch.zeros(len(problems), T), r.completion_ids()
    bodies = [comp[:-1] if comp and comp[-1] == tok.eot_id else comp for comp in comps]   # without the end-of-text
    texts = [tok.decode(body) for body in bodies]
    learned = step_scorer(problems, texts) if step_scorer is not None and weights.get("steps") else [None] * len(texts)
    for i, (p, comp, body, text) in enumerate(zip(problems, comps, bodies, texts)):
        seq, steps = compound_reward(p, text, weights, shaping, step_r=learned[i])
        ends = step_end_tokens([tok.enc.decode_single_token_bytes(t) for t in body], p.gsm8k) if steps else []
        scores[i, :len(comp)] = token_rewards(seq, steps, ends, len(comp))
    dev = ids.device
    actions = r.completion_mask.float() - r.tool_mask.float()            # (B, T) what the model wrote
    scores = rewards_on_actions(scores.to(dev), actions)
    return Batch(r, ids, mask, r.prompt.shape[1], actions, scores,
                 torch.tensor([outcome_reward(p, t) for p, t in zip(problems, texts)], device=dev),
                 torch.tensor([format_reward(t) for t in texts], device=dev),
                 torch.tensor([float(len(split_steps(t, p.gsm8k))) for p, t in zip(problems, texts)], device=dev),
                 texts)


def sample_groups(policy: GPT, tok: Tokenizer, task, n_problems: int, k: int, seed: int, weights: dict,
                  max_new_tokens: int, temperature: float, generator, prefix: list[int] = (), shaping: str = "none",
                  step_scorer=None, rank: int = 0, world: int = 1, tool=None, with_logprobs: bool = False):
    """k completions for each of `n_problems` fresh training problems drawn with `seed`, the k of a problem next to
    each other: (problems, each repeated k times; their Batch). Sampling is seeded by `seed` too: a round is
    reproducible on its own. Under torchrun this rank takes its share of the problems (whole groups) and samples
    with its own seed."""
    it = stream("train", seed=seed, cfg=task)
    mine = shard([next(it) for _ in range(n_problems)], rank, world, "prompts per iteration")
    problems = [p for p in mine for _ in range(k)]
    generator.manual_seed(rank_seed(seed, rank))
    policy.eval()
    return problems, collect(policy, tok, problems, weights, shaping, max_new_tokens, temperature, generator, prefix,
                             step_scorer, tool, with_logprobs)


def select(b: Batch, rows: list[int]) -> Batch:
    """The batch's `rows` (completions), every field alike."""
    r = b.rollout
    pick = lambda x: None if x is None else x[rows]                       # noqa: E731
    return Batch(Rollout(r.prompt[rows], r.prompt_mask[rows], r.completion[rows], r.completion_mask[rows],
                         pick(r.logprobs), pick(r.tool_mask), pick(r.hidden)), b.ids[rows], b.mask[rows], b.P,
                 b.completion_mask[rows], b.scores[rows], b.correct[rows], b.formatted[rows], b.n_steps[rows],
                 [b.texts[i] for i in rows])


def cat_batches(batches: list[Batch], limit: int | None = None) -> Batch:
    """One batch from several (DAPO's refill rounds), its first `limit` rows: prompts left-padded to the longest,
    completions right-padded with masked zeros (the attention mask gives every row its own positions)."""
    P = max(b.P for b in batches)
    T = max(b.completion_mask.shape[1] for b in batches)
    left = lambda x, v: F.pad(x, (P - x.shape[1], 0), value=v)            # noqa: E731
    right = lambda x, v: F.pad(x.movedim(1, -1), (0, T - x.shape[1]), value=v).movedim(-1, 1)   # noqa: E731 (B, T, ...)
    cat = lambda xs: torch.cat(xs)[:limit]                                # noqa: E731
    padded = lambda xs: None if any(x is None for x in xs) else cat([right(x, 0) for x in xs])   # noqa: E731
    rs = [b.rollout for b in batches]
    r = Rollout(cat([left(x.prompt, 0) for x in rs]), cat([left(x.prompt_mask, 0) for x in rs]),
                padded([x.completion for x in rs]), padded([x.completion_mask for x in rs]),
                padded([x.logprobs for x in rs]), padded([x.tool_mask for x in rs]), padded([x.hidden for x in rs]))
    ids, mask = r.sequences()
    return Batch(r, ids, mask, P, padded([b.completion_mask for b in batches]), padded([b.scores for b in batches]),
                 cat([b.correct for b in batches]), cat([b.formatted for b in batches]),
                 cat([b.n_steps for b in batches]), [t for b in batches for t in b.texts][:limit])


def every_step_right(p, text: str) -> bool:
    """The step oracle accepts every step (on GSM8K text there must be one: prose alone checks nothing)."""
    v = check_steps(p, text)
    return all(v) and (bool(v) or not p.gsm8k)


def keep_verified(problems, texts, correct, verify: str = "outcome") -> list[tuple]:
    """The accepted (problem, completion) pairs — right final answer (`verify="outcome"`), and every step right too
    (`verify="steps"`) — each distinct completion of a problem once (expert iteration, sequence-level distillation)."""
    kept, seen = [], set()
    for p, t, c in zip(problems, texts, correct):
        ok = bool(c) and (verify == "outcome" or every_step_right(p, t))
        if ok and (p.question, t) not in seen:
            seen.add((p.question, t))
            kept.append((p, t))
    return kept


def completion_hidden(model: GPT, ids, mask, P: int):
    """Final hidden states (B, T, C) at the positions that predict the completion ids[:, P:] of a sampled batch.
    `model` may be DDP-wrapped (distributed.wrap): the forward goes through the wrapper."""
    return model(ids[:, :-1], mask[:, :-1], return_hidden=True)[:, P - 1:]


def completion_forward(model: GPT, ids, mask, P: int, temperature: float = 1.0, with_entropy: bool = True):
    """(log-probs (B, T), entropy (B, T) or None, hidden states (B, T, C)) of the completion tokens ids[:, P:].
    The lm_head is fused with the log-softmax (rl.hidden_logprobs): on CPU, once they are large, the (B, T, V) logits
    never exist whole."""
    h = completion_hidden(model, ids, mask, P)                         # (B, T, C)
    out = hidden_logprobs(h, unwrap(model).lm_head.weight, ids[:, P:], temperature, with_entropy)
    logp, ent = out if with_entropy else (out, None)
    return logp, ent, h


def old_logprobs(policy: GPT, b: Batch, temperature: float = 1.0):
    """The sampling policy's (log-probs (B, T), hidden states (B, T, C)) of a batch's completion tokens: the
    sampler's own, when it kept them (collect(..., with_logprobs=True), at this same temperature), else one more
    forward over the batch."""
    r = b.rollout
    if r is not None and r.logprobs is not None and r.hidden is not None:
        return r.logprobs, r.hidden                                      # 0 wherever the model wrote nothing
    logp, _, h = completion_forward(policy, b.ids, b.mask, b.P, temperature, with_entropy=False)
    return logp, h
