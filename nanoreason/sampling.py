"""Batched sampling with a KV cache (in the spirit of nanochat's engine.py).

Prompts of different lengths are left-padded into one batch; the model's attention mask and per-row positions make
every row behave exactly as if it were alone. Each step feeds only the newest token through the cache.

Returns a `Rollout`, which is what RL needs:
    prompt      (B, P)  left-padded prompt ids            prompt_mask      (B, P)  1 = real token
    completion  (B, T)  sampled ids, eot-padded           completion_mask  (B, T)  1 = generated (incl. its eot and
                                                                                     any tool tokens)
    logprobs    (B, T)  log pi(token) of each sampled token under the sampling temperature (before top-k/top-p);
                        None unless generate(..., with_logprobs=True)
    hidden      (B, T, C) the final hidden state that predicted each token (a value head reads it); with logprobs
    tool_mask   (B, T)  1 = written by a tool (generate(..., tool=...)), not sampled: context, not an action
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoreason.config import ConfigError
from nanoreason.model import GPT, KVCache
from nanoreason.rl import token_logprobs
from nanoreason.rundir import NonFiniteError


@dataclass
class Rollout:
    prompt: torch.Tensor
    prompt_mask: torch.Tensor
    completion: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor | None
    tool_mask: torch.Tensor | None = None
    hidden: torch.Tensor | None = None

    def sequences(self):
        """Prompt + completion as one left/right-padded batch: ids (B, P+T) and attention mask (B, P+T)."""
        return (torch.cat([self.prompt, self.completion], 1),
                torch.cat([self.prompt_mask, self.completion_mask], 1))

    def completion_ids(self) -> list[list[int]]:
        """The generated tokens of each row, without padding (the final eot, if any, included)."""
        return [row[m.bool()].tolist() for row, m in zip(self.completion, self.completion_mask)]


def left_pad(seqs: list[list[int]], pad_id: int):
    """(ids, mask), both (B, max_len), with each sequence right-aligned."""
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), P), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, P - len(s):] = torch.tensor(s)
            mask[i, P - len(s):] = 1
    return ids, mask


def filter_logits(logits, top_k: int | None = None, top_p: float | None = None):
    """Keep the top-k logits and/or the smallest set whose probability reaches top_p; the rest become -inf."""
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p             # tokens entirely beyond the nucleus
        drop = drop.scatter(-1, order, drop)                         # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_from(probs, generator=None):
    """One token per row of `probs` (B, V), by inverse transform: u ~ U(0, total] per row, the first token whose
    cumulative probability reaches it (a token of probability 0 never does). B random numbers a step, where
    torch.multinomial draws B x V."""
    cdf = probs.cumsum(-1)                                                   # (B, V)
    u = (1 - torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u).squeeze(-1)                             # (B,); V where a row is NaN
    if bool((tok >= probs.shape[-1]).any()):
        raise NonFiniteError("the model's next-token probabilities are NaN or inf (its weights are not finite, or "
                             "too large)")
    return tok


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, eot_id: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             generator: torch.Generator | None = None, stop_ids=(), with_logprobs: bool = False,
             tool=None) -> Rollout:
    """Sample up to `max_new_tokens` after each prompt; a row stops at its first eot, or at its first token in
    `stop_ids` (kept: e.g. the tokens that end a line, for one step at a time). `greedy` (or temperature 0) takes the
    argmax; its log-probs are then under temperature 1. `with_logprobs`: also keep each sampled token's log-prob and
    the hidden state that predicted it: the policy's forward over its own samples, which PPO needs (old log-probs,
    values) and need not run again. By default `Rollout.logprobs` and `Rollout.hidden` are None.

    `tool` (nanoreason.tools.Calculator): after a row writes a token in `tool.triggers`, `tool.reply(its completion
    so far)` gives the ids the tool writes next (often none); they replace that row's samples, one a step, so the row
    and its cache go on exactly as if the model had written them, while the other rows keep sampling. They are
    marked in `Rollout.tool_mask` (log-prob 0)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs a non-empty list of non-empty prompts")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    greedy = greedy or temperature == 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompt, prompt_mask = left_pad(prompts, eot_id)
    prompt, prompt_mask = prompt.to(device), prompt_mask.to(device)
    B, P = prompt.shape
    longest = max(len(p) for p in prompts)
    if longest >= model.cfg.block_size:
        raise ConfigError(f"the question is {longest} tokens; this model reads at most {model.cfg.block_size - 1} "
                          f"(its block_size is {model.cfg.block_size}), so shorten it")
    max_new_tokens = min(max_new_tokens, model.cfg.block_size - longest)
    out = torch.full((B, max_new_tokens), eot_id, dtype=torch.long, device=device)   # made outside inference
    out_mask = torch.zeros((B, max_new_tokens), dtype=torch.long, device=device)    # mode: the trainers' forwards
    logprobs = torch.zeros((B, max_new_tokens), device=device) if with_logprobs else None   # read them
    hidden = torch.zeros((B, max_new_tokens, model.cfg.n_embd), device=device) if with_logprobs else None
    tool_mask = torch.zeros((B, max_new_tokens), dtype=torch.long, device=device)
    if tool is not None:
        triggers = torch.zeros(model.cfg.vocab_size, dtype=torch.bool, device=device)
        triggers[:len(tool.triggers)] = tool.triggers.to(device)[:model.cfg.vocab_size]
    pending = {}                                                             # row -> ids the tool still writes
    done = torch.zeros(B, dtype=torch.bool, device=device)
    stop = torch.tensor([eot_id, *stop_ids], device=device)
    eot = torch.full((B,), eot_id, dtype=torch.long, device=device)
    with torch.inference_mode():                                             # no autograd bookkeeping at all
        cache = KVCache(model.cfg, B, P + max_new_tokens, device, dtype=next(model.parameters()).dtype)
        h = model.hidden(prompt, prompt_mask, cache, last=True)[:, -1]      # (B, C): the last position
        logits = model.lm_head(h).float()                                    # (B, V)
        if not torch.isfinite(logits).all():                                 # NaN weights would sample garbage
            model.train(was_training)
            raise NonFiniteError("the model's next-token logits are NaN or inf (its weights are not finite, or too "
                                 "large)")
        for t in range(max_new_tokens):
            scaled = logits if greedy else logits / temperature
            if greedy:
                tok = scaled.argmax(-1)
            else:
                tok = sample_from(filter_logits(scaled, top_k, top_p).softmax(-1), generator)
            if with_logprobs:
                logprobs[:, t] = torch.where(done, 0.0, token_logprobs(scaled, tok))
                hidden[:, t] = h
            if pending:                                                      # the tool writes, not the model
                rows = list(pending)
                tok[rows] = torch.tensor([pending[i].pop(0) for i in rows], device=device)
                tool_mask[rows, t] = 1
                if with_logprobs:
                    logprobs[rows, t] = 0.0
                pending = {i: ids for i, ids in pending.items() if ids}
            tok = torch.where(done, eot, tok)
            out[:, t] = tok
            out_mask[:, t] = ~done
            done = done | torch.isin(tok, stop)
            if tool is not None:                                             # rows that may have opened a call
                called = triggers[tok] & ~done & (tool_mask[:, t] == 0)
                for i in called.nonzero().flatten().tolist():
                    ids = tool.reply(out[i, :t + 1].tolist())
                    if ids:
                        pending[i] = ids
            if t == max_new_tokens - 1 or done.all():
                break
            h = model.decode(tok, cache)                                     # (B, C)
            logits = model.lm_head(h).float()                                # (B, V)
    T = t + 1
    model.train(was_training)
    return Rollout(prompt, prompt_mask, out[:, :T], out_mask[:, :T], logprobs[:, :T] if with_logprobs else None,
                   tool_mask[:, :T] * out_mask[:, :T], hidden[:, :T] if with_logprobs else None)
