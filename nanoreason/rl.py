"""The RL math, as pure functions on right-padded (B, T) tensors. `mask` is 1 on response tokens, 0 on padding.

Each function has its equation on one line and the paper it comes from; tests/test_rl.py checks each one against a
slow loop or a case worked by hand. Conventions follow CleanRL / TRL / verl (see docs/ppo.md).
"""
from __future__ import annotations

import torch

from kernels.logprobs import linear_logprobs, logprobs


# ---------------------------------------------------------------------------------------------------------------
# Masked statistics

def masked_sum(x, mask, dim=None):
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x, mask, dim=None):
    """sum(x * m) / sum(m) (over everything, or along `dim`); 0 where the mask is empty."""
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1) if dim is not None else \
        masked_sum(x, mask) / mask.sum().clamp(min=1)


def masked_var(x, mask):
    """Unbiased variance of the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return masked_sum((x - mean) ** 2, mask) / (n - 1).clamp(min=1)


def masked_whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8):
    """(x - mean) / std over the masked entries; padding comes out 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def outcome_advantages(correct, mask):
    """A_t = whiten(R) on every completion token, R = 1 if the answer is right: REINFORCE with the batch-mean baseline
    (Williams 1992), scaled by the batch's spread. correct (B,), mask (B, T) -> (B, T)."""
    return masked_whiten(correct.float()[:, None] * mask, mask)


# ---------------------------------------------------------------------------------------------------------------
# Log-probabilities, entropy

def token_logprobs(logits, targets, temperature: float = 1.0):
    """log softmax(logits / T)[target] per position: (B, T, V), (B, T) -> (B, T) in fp32, without materialising the
    log-softmax once the logits are large (kernels/logprobs.py, backend "auto": plain log_softmax + gather up to 2**22
    elements, then the fused Triton kernel on CUDA or its chunked pure-torch twin elsewhere)."""
    return logprobs(logits, targets, temperature, backend="auto")


def hidden_logprobs(h, weight, targets, temperature: float = 1.0, with_entropy: bool = False):
    """token_logprobs of the logits h @ weight.T (h (B, T, C), the lm_head weight (V, C)): logp (B, T) fp32; with
    `with_entropy`, (logp, H) with H = -sum_v p_v log p_v per position. kernels.linear_logprobs, backend "auto": one
    matmul and log_softmax while the logits are small (<= 2**22 elements); above that, off CUDA the (B, T, V) logits
    and their gradient are never made whole ("chunked"), on CUDA one matmul, then the Triton kernel."""
    return linear_logprobs(h, weight, targets, temperature, backend="auto", with_entropy=with_entropy)


def rewards_on_actions(rewards, actions):
    """Tools in the loop: a reward that lands on a token the tool wrote (`actions` 0 there) moves to the last token
    the model wrote before it, the action that led to it; tool tokens earn nothing. r'_t = sum_{s: last action <= s
    is t} r_s. rewards, actions (B, T) -> (B, T), the same total per row (a reward before any action is kept)."""
    t = torch.arange(rewards.shape[1], device=rewards.device).expand_as(rewards)
    last = torch.where(actions.bool(), t, -1).cummax(1).values                # (B, T) last action at or before t
    target = torch.where(last >= 0, last, t)
    return torch.zeros_like(rewards).scatter_add(1, target, rewards)


# ---------------------------------------------------------------------------------------------------------------
# Advantages

def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalized Advantage Estimation (Schulman et al. 2016), right-padded (B, T); value after the last token = 0.
    delta_t = r_t + gamma * V_{t+1} - V_t ;  A_t = delta_t + gamma * lam * A_{t+1} ;  returns R_t = A_t + V_t."""
    B, T = rewards.shape
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = adv * m
        next_value = torch.where(m.bool(), values[:, t], next_value)   # padding is skipped, not a state
        next_adv = torch.where(m.bool(), adv, next_adv)
    return advantages, (advantages + values) * mask


# Group baselines: G completions of the same prompt sit next to each other, rewards (B,) with B = n_prompts * G.
# No critic: the other samples of the prompt are the baseline. Each returns one advantage per completion, (B,).

def group_advantages(rewards, group_size: int, scale: bool = True, eps: float = 1e-6):
    """GRPO (Shao et al. 2024): A_i = (r_i - mean_g r) / (std_g r + eps).  scale=False: A_i = r_i - mean_g r, the
    group-mean baseline of REINFORCE (nanochat) and of Dr.GRPO (Liu et al. 2025, which drops the std: it up-weights
    prompts that are nearly always right or nearly always wrong). std is the unbiased (G-1) one, as in TRL."""
    r = rewards.view(-1, group_size)                                   # (n_prompts, G)
    adv = r - r.mean(1, keepdim=True)
    if scale:
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv.reshape(-1)


def rloo_advantages(rewards, group_size: int):
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): A_i = r_i - mean_{j != i} r_j  =  G / (G-1) * (r_i - mean_g r)."""
    r = rewards.view(-1, group_size)                                   # (n_prompts, G)
    loo = (r.sum(1, keepdim=True) - r) / (group_size - 1)
    return (r - loo).reshape(-1)


def agg_loss(loss, mask, mode: str = "token-mean", max_len: int | None = None):
    """Per-token losses (B, T) -> one number; the choice weights long and short answers differently.
    token-mean:      sum_it l / sum_it m                   every token counts the same (DAPO, Yu et al. 2025)
    seq-mean:        mean_i (sum_t l_i / |o_i|)            every answer counts the same (GRPO's 1/|o_i|)
    seq-sum-const:   sum_it l / (B * max_len)              a constant normaliser (Dr.GRPO): no length bias"""
    return microbatch_agg_loss(loss, mask, mode, mask.sum(), loss.shape[0], max_len)


def microbatch_agg_loss(loss, mask, mode: str, n_tokens, n_seqs: int, max_len: int | None = None):
    """One microbatch's share of `agg_loss` over the whole batch, so that summing the shares (gradient
    accumulation; under DDP, across ranks too) gives exactly the big batch's loss and gradient. The bug this avoids
    (it hit verl and nanochat): averaging per-microbatch token-means weights a token by 1 / (its microbatch's tokens).
    n_tokens, n_seqs: mask.sum() and the number of answers over the WHOLE batch.
    token-mean:    sum_it l / N_tokens ;  seq-mean:  sum_i (sum_t l_i / |o_i|) / N_seqs ;
    seq-sum-const: sum_it l / (N_seqs * max_len)"""
    if mode == "token-mean":
        return masked_sum(loss, mask) / max(float(n_tokens), 1.0)
    if mode == "seq-mean":
        return masked_mean(loss, mask, 1).sum() / n_seqs
    if mode == "seq-sum-const":
        return masked_sum(loss, mask) / (n_seqs * (max_len or loss.shape[1]))
    raise ValueError(f"unknown loss aggregation {mode!r}; use token-mean, seq-mean or seq-sum-const")


# ---------------------------------------------------------------------------------------------------------------
# KL between the policy and the frozen reference, per token (Schulman's "Approximating KL divergence", 2020)

def kl_estimate(logp, ref_logp, kind: str = "k1"):
    """Per-token estimate of KL(pi || ref) from sampled tokens, with l = ref_logp - logp:
    k1 = -l (unbiased, can be negative) ; k2 = l^2 / 2 ; k3 = e^l - l - 1 (unbiased, always >= 0)."""
    l = ref_logp - logp
    if kind == "k1":
        return -l
    if kind == "k2":
        return 0.5 * l ** 2
    if kind == "k3":
        return torch.exp(l) - l - 1
    raise ValueError(f"unknown KL estimator {kind!r}; use k1, k2 or k3")


def kl_penalty_rewards(score, logp, ref_logp, mask, beta: float, kind: str = "k1"):
    """Classic RLHF reward (Ziegler et al. 2019; Stiennon et al. 2020): r_t = -beta * KL_t, and the sequence score is
    added on the last response token. score (B,) or per-token (B, T); returns (B, T)."""
    r = -beta * kl_estimate(logp, ref_logp, kind) * mask
    if score.dim() == 1:
        last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & mask.bool()      # one-hot on the last valid token
        return r + last * score[:, None]
    return r + score * mask


def kl_loss(logp, ref_logp, mask, kind: str = "k3"):
    """KL as a loss term instead of a reward (GRPO, Shao et al. 2024): masked_mean(KL_t)."""
    return masked_mean(kl_estimate(logp, ref_logp, kind), mask)


class AdaptiveKLController:
    """Ziegler et al. 2019: beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)."""

    def __init__(self, init_beta: float, target: float, horizon: int = 10000):
        self.beta, self.target, self.horizon = init_beta, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.beta *= 1 + error * n_steps / self.horizon
        return self.beta


# ---------------------------------------------------------------------------------------------------------------
# PPO losses (Schulman et al. 2017)

def ppo_policy_loss(logp, old_logp, advantages, mask, clip_eps: float = 0.2, dual_clip: float | None = None,
                    agg: str = "token-mean", max_len: int | None = None, clip_eps_high: float | None = None):
    """L = masked_mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps_high))), r = exp(logp - old_logp); eps_high = eps
    unless given: DAPO's clip-higher (Yu et al. 2025) lets unlikely tokens with A > 0 grow further (eps_high > eps).
    Dual clip (Ye et al. 2020): for A < 0 the loss is also capped at -A * c. Returns (loss, clip_fraction).
    On-policy with one update (r = 1) its gradient is REINFORCE's: -A * grad log pi. `agg`: see `agg_loss`."""
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if high < clip_eps:
        raise ValueError(f"clip_eps_high={high} is below clip_eps={clip_eps}: clip-higher needs eps_high >= eps_low")
    ratio = torch.exp(logp - old_logp)
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1 - clip_eps, 1 + high)
    loss = torch.max(loss1, loss2)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.min(loss, -advantages * dual_clip), loss)
    clipfrac = masked_mean((loss2 > loss1).float(), mask)
    return agg_loss(loss, mask, agg, max_len), clipfrac


def value_loss(values, old_values, returns, mask, clip_eps: float | None = 0.2):
    """0.5 * masked_mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))."""
    loss = (values - returns) ** 2
    if clip_eps is not None:
        clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


def approx_kl(logp, old_logp, mask):
    """Diagnostic: masked_mean(k3) between the updated and the sampling policy (how far an update moved)."""
    return masked_mean(kl_estimate(logp, old_logp, "k3"), mask)


def explained_variance(values, returns, mask):
    """1 - Var(R - V) / Var(R): 1 = the critic predicts returns perfectly, 0 = no better than a constant."""
    var_r = masked_var(returns, mask)
    return 1 - masked_var(returns - values, mask) / var_r.clamp(min=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# The 2025 family: DAPO, GSPO, REINFORCE++

def informative_groups(rewards, group_size: int):
    """DAPO's dynamic sampling (Yu et al. 2025): keep a group only if its rewards differ, since a group that is all
    right or all wrong has A = 0 for every completion (no gradient). Returns a (n_prompts,) bool mask."""
    r = rewards.view(-1, group_size)                                   # (n_prompts, G)
    return (r != r[:, :1]).any(1)


def overlong_penalty(lengths, max_len: int, cache: int):
    """DAPO's soft overlong punishment (Yu et al. 2025): 0 up to L_max - L_cache tokens, then falling linearly to -1
    at L_max: R = min(0, (L_max - L_cache - |o|) / L_cache), and -1 beyond L_max. lengths (B,) -> (B,)."""
    lengths = lengths.float()
    ramp = ((max_len - cache - lengths) / max(cache, 1)).clamp(max=0.0)
    return torch.where(lengths > max_len, torch.full_like(ramp, -1.0), ramp.clamp(min=-1.0))


def gspo_policy_loss(logp, old_logp, advantages, mask, clip_eps: float = 3e-4, clip_eps_high: float | None = None):
    """GSPO (Zheng et al. 2025): one importance ratio per answer, s_i = exp(mean_t (logp - old_logp)) (length-
    normalised), clipped like PPO's: L = mean_i max(-A_i s_i, -A_i clip(s_i, 1 - eps, 1 + eps_high)).
    Returns (loss, fraction of answers clipped). logp, old_logp, mask (B, T); advantages (B,)."""
    s = torch.exp(masked_mean(logp - old_logp, mask, 1))               # (B,)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    loss1, loss2 = -advantages * s, -advantages * s.clamp(1 - clip_eps, 1 + high)
    return torch.max(loss1, loss2).mean(), (loss2 > loss1).float().mean()


def reinforce_pp_advantages(score, logp, ref_logp, mask, beta: float, kind: str = "k1"):
    """REINFORCE++ (Hu 2025): per-token rewards r_t = score on the last token - beta * KL_t (`kl_penalty_rewards`),
    returns G_t = sum_{s >= t} r_s (gamma = 1), whitened over every token of the batch: no critic, no group.
    score (B,); logp, ref_logp, mask (B, T) -> advantages (B, T)."""
    r = kl_penalty_rewards(score, logp, ref_logp, mask, beta, kind)                 # (B, T)
    returns = r.flip(1).cumsum(1).flip(1) * mask
    return masked_whiten(returns, mask)
