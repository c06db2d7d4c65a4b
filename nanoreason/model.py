"""A nanoGPT-style transformer with a KV cache and two scalar heads.

    tokens -> token + position embeddings -> n_layer x [x + attn(ln(x)); x + mlp(ln(x))] -> ln_f -> h   # (B, T, C)
    h -> lm_head (tied to the token embedding)  -> next-token logits                                 # (B, T, V)
    h -> value_head                              -> V(s_t), the PPO critic                            # (B, T)
    h -> reward_head                             -> a reward-model score per token (--readout=head)   # (B, T)

Rows may be left-padded (batched prompts of different lengths): pass `attention_mask` (B, T) with 0 on padding; the
model then gives each row the positions and attention it would have alone. A `KVCache` makes decoding incremental.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from nanoreason.config import ConfigError


@dataclass
class GPTConfig:
    vocab_size: int = 515      # our tokenizer: 512 BPE tokens + 3 special tokens
    block_size: int = 160      # longest sequence (prompt + completion) in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    gelu: str = "none"         # "none" (exact erf GELU) or "tanh" (GPT-2's approximation, for loaded GPT-2 weights)

    def __post_init__(self):
        for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) <= 0:
                raise ConfigError(f"model config: {k} must be a positive integer, got {getattr(self, k)!r}")
        if self.vocab_size < 257:
            raise ConfigError(f"model config: vocab_size must be >= 256 bytes + 1 special, got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.gelu not in ("none", "tanh"):
            raise ConfigError(f"model config: gelu must be 'none' or 'tanh', got {self.gelu!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model config: dropout must be in [0, 1), got {self.dropout}")


class KVCache:
    """Keys/values of every layer for up to `max_len` positions, plus which slots hold real (non-pad) tokens."""

    def __init__(self, cfg: GPTConfig, batch: int, max_len: int, device, dtype=torch.float32):
        hd = cfg.n_embd // cfg.n_head
        self.k = torch.zeros(cfg.n_layer, batch, cfg.n_head, max_len, hd, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)   # (B, max_len)
        self.pos = torch.zeros(batch, dtype=torch.long, device=device)              # next position id per row
        self.len = 0                                                                # slots filled so far


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.dropout = layer, cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x, mask=None, cache: KVCache | None = None, last: bool = False):
        """x (B, T, C); mask (B, 1, T, S) bool or None (causal). `last`: only the last position's output is wanted
        (a sampler's prefill): every position's keys and values still go to the cache, but only the last query
        attends -> (B, 1, C)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if cache is not None:                           # write this chunk's keys/values, attend to all filled slots
            s = cache.len
            cache.k[self.layer, :, :, s:s + T] = k
            cache.v[self.layer, :, :, s:s + T] = v
            k, v = cache.k[self.layer, :, :, :s + T], cache.v[self.layer, :, :, :s + T]
        drop = self.dropout if self.training else 0.0
        if last:                                        # the last query may see every slot: no causal mask
            q, T = q[:, :, -1:], 1
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, :, -1:],
                                               dropout_p=drop)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def step(self, x, bias, cache: KVCache):
        """The sampler's step: one new token per row, x (B, C) -> (B, C). bias (B*H, 1, S): 0 on the slots a row may
        see, -inf on its padding. Attention of one query is two batched matmuls over views of the cache."""
        B, C = x.shape
        H, D, s = self.n_head, C // self.n_head, cache.len
        q, k, v = self.c_attn(x).split(C, dim=1)                                   # (B, C) each
        cache.k[self.layer, :, :, s] = k.view(B, H, D)
        cache.v[self.layer, :, :, s] = v.view(B, H, D)
        keys = cache.k[self.layer, :, :, :s + 1].reshape(B * H, s + 1, D)         # (B*H, S, D), no copy
        values = cache.v[self.layer, :, :, :s + 1].reshape(B * H, s + 1, D)
        att = torch.baddbmm(bias, q.reshape(B * H, 1, D), keys.transpose(1, 2), alpha=D ** -0.5)  # (B*H, 1, S)
        y = torch.bmm(att.softmax(-1), values)                                    # (B*H, 1, D)
        return self.c_proj(y.view(B, C))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(approximate=cfg.gelu),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, mask=None, cache=None, last: bool = False):   # x (B, T, C) -> (B, T, C); last: (B, 1, C)
        a = self.attn(self.ln_1(x), mask, cache, last)
        x = (x[:, -1:] if last else x) + a
        return x + self.mlp(self.ln_2(x))

    def step(self, x, bias, cache):       # the sampler's step, x (B, C)
        x = x + self.attn.step(self.ln_1(x), bias, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                     # tied embeddings
        self.value_head = nn.Linear(cfg.n_embd, 1)                # critic V(s_t)
        self.reward_head = nn.Linear(cfg.n_embd, 1)               # reward model score per token
        self.activation_checkpointing = False                     # trade compute for memory in training
        self.apply(self._init_weights)
        for name, p in self.named_parameters():                   # GPT-2: scaled init of residual projections
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())         # tied weights are counted once

    def hidden(self, idx, attention_mask=None, cache: KVCache | None = None, last: bool = False):
        """Final hidden states h (B, T, C) for tokens `idx` (B, T).

        attention_mask (B, T): 1 for real tokens, 0 for (left or right) padding; None means no padding.
        cache: continue from the cached prefix (the mask then covers only the new tokens).
        last: only the last position's state is wanted (a sampler's prefill) -> (B, 1, C); the final block then
        runs its attention output and MLP on that position alone (about a fifth less work for 4 layers)."""
        B, T = idx.shape
        start = cache.len if cache is not None else 0
        # No padding: the fast causal path. Only a sampler's prefill (a cache) looks inside its mask for padding;
        # a training forward would pay a device sync for it.
        unpadded = attention_mask is None or (cache is not None and bool(attention_mask.all()))
        if start == 0 and unpadded:
            pos, mask = torch.arange(T, device=idx.device).expand(B, T), None
            if cache is not None:
                cache.valid[:, :T] = True
                cache.pos = torch.full((B,), T, dtype=torch.long, device=idx.device)
        else:
            am = torch.ones(B, T, dtype=torch.bool, device=idx.device) if attention_mask is None \
                else attention_mask.bool()
            first = cache.pos if cache is not None else torch.zeros(B, dtype=torch.long, device=idx.device)
            pos = first[:, None] + am.long().cumsum(1) - 1                       # position = #real tokens before
            pos = pos.clamp(min=0)
            valid = am
            if cache is not None:
                cache.valid[:, start:start + T] = am
                cache.pos = first + am.long().sum(1)
                valid = cache.valid[:, :start + T]
            S = valid.shape[1]
            q_slot = torch.arange(start, start + T, device=idx.device)
            k_slot = torch.arange(S, device=idx.device)
            causal = k_slot[None, :] <= q_slot[:, None]                             # (T, S)
            mask = causal[None] & valid[:, None, :]                                 # (B, T, S)
            mask = mask | (k_slot[None, None, :] == q_slot[None, :, None])          # a pad query sees itself: no NaN
            mask = mask[:, None]                                                    # (B, 1, T, S)
        if pos.max() >= self.cfg.block_size:
            raise ValueError(f"position {int(pos.max())} exceeds block_size {self.cfg.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for i, block in enumerate(self.blocks):
            final = last and i == len(self.blocks) - 1
            if self.activation_checkpointing and self.training and cache is None:   # keep only block inputs,
                x = checkpoint(block, x, mask, None, final, use_reentrant=False)    # recompute inside in backward
            else:
                x = block(x, mask, cache, final)
        if cache is not None:
            cache.len += T
        return self.ln_f(x)

    def decode(self, tok, cache: KVCache):
        """The sampler's step: one new token per row, tok (B,), through the cache -> final hidden states (B, C).
        Every row runs, finished or not (the sampler ignores what a finished row writes), and the prompts' left
        padding stays masked; for the rows it keeps, the same as hidden(tok[:, None], None, cache)[:, 0] with far
        fewer small ops: one query attends to every filled slot, so the mask is one additive bias per row, built
        once for all layers."""
        s = cache.len
        cache.valid[:, s] = True
        x = self.wte(tok) + self.wpe(cache.pos)                                     # (B, C)
        bias = torch.zeros(cache.valid.shape[0], 1, s + 1, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill_(~cache.valid[:, None, :s + 1], float("-inf"))      # (B, 1, S)
        bias = bias.repeat_interleave(self.cfg.n_head, 0)                           # (B*H, 1, S)
        cache.pos += 1
        for block in self.blocks:
            x = block.step(x, bias, cache)
        cache.len += 1
        return self.ln_f(x)

    def forward(self, idx, attention_mask=None, cache=None, return_hidden: bool = False):
        """Next-token logits (B, T, V); the final hidden states (B, T, C) with return_hidden (for the heads: under
        DDP every training forward must go through forward)."""
        h = self.hidden(idx, attention_mask, cache)
        return h if return_hidden else self.lm_head(h)

    def values(self, h):      # (B, T, C) -> (B, T)
        return self.value_head(h).squeeze(-1)

    def rewards(self, h):     # (B, T, C) -> (B, T)
        return self.reward_head(h).squeeze(-1)
