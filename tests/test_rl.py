"""Every RL function against a slow, obviously-correct reference or a case worked by hand."""
import math

import pytest
import torch

from nanoreason import rl

torch.manual_seed(0)


def slow_gae(rewards, values, mask, gamma, lam):
    """One row at a time, over the valid tokens only, straight from the definition."""
    A, R = torch.zeros_like(rewards), torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        idx = [t for t in range(rewards.shape[1]) if mask[b, t]]
        for j, t in enumerate(idx):
            adv = 0.0
            for k, u in enumerate(idx[j:]):
                v_next = values[b, idx[j + k + 1]] if j + k + 1 < len(idx) else 0.0
                delta = rewards[b, u] + gamma * v_next - values[b, u]
                adv += (gamma * lam) ** k * delta
            A[b, t], R[b, t] = adv, adv + values[b, t]
    return A, R


def test_gae_by_hand():
    # T=3, gamma=1, lam=1: A_t = sum of future rewards - V_t (Monte-Carlo return minus baseline)
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    m = torch.ones(1, 3)
    A, R = rl.gae(r, v, m, gamma=1.0, lam=1.0)
    torch.testing.assert_close(A, torch.tensor([[0.5, 0.4, 0.3]]))
    torch.testing.assert_close(R, torch.tensor([[1.0, 1.0, 1.0]]))
    # lam=0: one-step TD errors delta_t = r_t + V_{t+1} - V_t, with V after the last token = 0
    A, _ = rl.gae(r, v, m, gamma=1.0, lam=0.0)
    torch.testing.assert_close(A, torch.tensor([[0.1, 0.1, 0.3]]))


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.99, 0.95), (0.9, 0.5)])
def test_gae_matches_slow_reference_with_padding(gamma, lam):
    r, v = torch.randn(4, 9), torch.randn(4, 9)
    m = torch.ones(4, 9)
    m[0, 6:] = 0
    m[1, 1:] = 0
    m[2, :] = 0
    A, R = rl.gae(r, v, m, gamma, lam)
    A_ref, R_ref = slow_gae(r, v, m, gamma, lam)
    torch.testing.assert_close(A, A_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(R, R_ref, atol=1e-5, rtol=1e-5)
    assert (A[m == 0] == 0).all()


def test_masked_statistics():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert rl.masked_mean(x, m).item() == 2.5
    torch.testing.assert_close(rl.masked_mean(x, m, 1), torch.tensor([1.5, 3.5]))
    assert math.isclose(rl.masked_var(x, m).item(), torch.tensor([1.0, 2.0, 3.0, 4.0]).var().item(), rel_tol=1e-6)
    w = rl.masked_whiten(x, m)
    assert abs(rl.masked_mean(w, m).item()) < 1e-6 and abs(rl.masked_var(w, m).item() - 1) < 1e-4
    assert (w[m == 0] == 0).all()


def test_kl_estimators_by_hand_and_unbiased():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    l = math.log(0.25) - math.log(0.5)
    assert math.isclose(rl.kl_estimate(logp, ref, "k1").item(), -l, rel_tol=1e-6)
    assert math.isclose(rl.kl_estimate(logp, ref, "k2").item(), 0.5 * l * l, rel_tol=1e-6)
    assert math.isclose(rl.kl_estimate(logp, ref, "k3").item(), math.exp(l) - l - 1, rel_tol=1e-6)
    # Monte-Carlo: k1 and k3 are unbiased estimates of KL(p || q) for x ~ p
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    true = (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 400_000, replacement=True, generator=torch.Generator().manual_seed(0))
    for kind in ("k1", "k3"):
        est = rl.kl_estimate(p.log()[x], q.log()[x], kind).mean().item()
        assert abs(est - true) < 0.01, (kind, est, true)
    assert (rl.kl_estimate(p.log()[x], q.log()[x], "k3") >= 0).all()
    with pytest.raises(ValueError, match="unknown KL estimator"):
        rl.kl_estimate(logp, ref, "k4")


def test_kl_penalty_rewards_put_the_score_on_the_last_token():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -2.0, -2.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    r = rl.kl_penalty_rewards(torch.tensor([1.0, 2.0]), logp, ref, m, beta=0.1)
    torch.testing.assert_close(r, torch.tensor([[-0.05, 0.0, 0.05 + 1.0], [-0.1 + 2.0, 0.0, 0.0]]))
    assert rl.kl_loss(logp, logp, m).item() == 0


def test_adaptive_kl_controller():
    c = rl.AdaptiveKLController(0.1, target=1.0, horizon=100)
    assert math.isclose(c.update(kl=3.0, n_steps=10), 0.1 * (1 + 0.2 * 10 / 100))     # error clipped at +0.2
    assert math.isclose(c.update(kl=0.9, n_steps=10), 0.1 * 1.02 * (1 - 0.1 * 10 / 100))


def slow_ppo_loss(logp, old, adv, eps, dual):
    out = []
    for lp, o, a in zip(logp.tolist(), old.tolist(), adv.tolist()):
        r = math.exp(lp - o)
        l = max(-a * r, -a * min(max(r, 1 - eps), 1 + eps))
        if dual is not None and a < 0:
            l = min(l, -a * dual)
        out.append(l)
    return sum(out) / len(out)


@pytest.mark.parametrize("dual", [None, 3.0])
def test_ppo_policy_loss_matches_reference(dual):
    logp, old, adv = torch.randn(50) * 0.5 - 1, torch.randn(50) * 0.5 - 1, torch.randn(50) * 2
    adv[0], logp[0], old[0] = -2.0, 1.5, -1.0       # ratio e^2.5 with A < 0: the dual clip's case
    loss, clipfrac = rl.ppo_policy_loss(logp[None], old[None], adv[None], torch.ones(1, 50), 0.2, dual)
    assert math.isclose(loss.item(), slow_ppo_loss(logp, old, adv, 0.2, dual), rel_tol=1e-5)
    assert 0 < clipfrac.item() < 1


def test_ppo_loss_gradient_vanishes_outside_the_trust_region():
    logp = torch.tensor([[0.5, 0.5]], requires_grad=True)      # ratio e^0.5 > 1.2
    loss, _ = rl.ppo_policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2))
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] != 0      # A>0 clipped; A<0 still pushed down


def test_value_loss_by_hand():
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    m = torch.ones(1, 2)
    # token 0: max((1-0)^2, (0+0.2-0)^2) = 1; token 1: max((0-1)^2, (0-1)^2) = 1 -> 0.5 * mean = 0.5
    assert rl.value_loss(v, old, ret, m, 0.2).item() == 0.5
    assert rl.value_loss(v, old, ret, m, None).item() == 0.5
    v = torch.tensor([[0.5, 0.0]])  # unclipped (0.5)^2=0.25, clipped (0.2)^2=0.04 -> max 0.25 ; token 1: 1
    assert math.isclose(rl.value_loss(v, old, ret, m, 0.2).item(), 0.5 * (0.25 + 1) / 2)


def test_logprobs_entropy_and_diagnostics():
    logits = torch.randn(2, 3, 7)
    tgt = torch.randint(0, 7, (2, 3))
    ref = torch.log_softmax(logits.double() / 0.7, -1).gather(-1, tgt[..., None]).squeeze(-1)
    torch.testing.assert_close(rl.token_logprobs(logits, tgt, 0.7).double(), ref, atol=1e-5, rtol=1e-5)
    w, h = torch.randn(7, 5), torch.randn(2, 3, 5)                     # the lm_head fused in: logits = h @ w.T
    p = torch.softmax((h @ w.T).double() / 0.7, -1)
    logp, ent = rl.hidden_logprobs(h, w, tgt, 0.7, with_entropy=True)
    torch.testing.assert_close(logp.double(), p.log().gather(-1, tgt[..., None]).squeeze(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent.double(), -(p * p.log()).sum(-1), atol=1e-5, rtol=1e-5)
    m = torch.ones(2, 3)
    assert rl.approx_kl(ref, ref, m).item() == 0
    ret = torch.randn(2, 3)
    assert math.isclose(rl.explained_variance(ret, ret, m).item(), 1.0)
    assert abs(rl.explained_variance(torch.zeros(2, 3) + ret.mean(), ret, m).item()) < 1e-5


# ---- group baselines (GRPO, Dr.GRPO, RLOO, REINFORCE) and loss aggregation

def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])          # two groups of 4; the second has no signal
    std = math.sqrt(4 * 0.25 / 3)                                       # unbiased std of (1, 0, 0, 1)
    a = 0.5 / (std + 1e-6)
    torch.testing.assert_close(rl.group_advantages(r, 4), torch.tensor([a, -a, -a, a, 0, 0, 0, 0]))
    torch.testing.assert_close(rl.group_advantages(r, 4, scale=False),   # Dr.GRPO / REINFORCE: r - mean
                               torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    # RLOO: 1 - (0 + 0 + 1) / 3 = 2/3 ; 0 - (1 + 0 + 1) / 3 = -2/3
    torch.testing.assert_close(rl.rloo_advantages(r, 4), torch.tensor([2, -2, -2, 2, 0, 0, 0, 0]) / 3)


def test_rloo_matches_a_slow_leave_one_out_loop():
    r, G = torch.rand(12), 3
    slow = torch.tensor([r[i] - sum(r[j] for j in range(i // G * G, i // G * G + G) if j != i) / (G - 1)
                         for i in range(12)])
    torch.testing.assert_close(rl.rloo_advantages(r, G), slow)
    torch.testing.assert_close(rl.rloo_advantages(r, G), G / (G - 1) * rl.group_advantages(r, G, scale=False))


def test_agg_loss_by_hand():
    loss = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert rl.agg_loss(loss, m, "token-mean").item() == pytest.approx(6 / 3)           # (1 + 2 + 3) / 3 tokens
    assert rl.agg_loss(loss, m, "seq-mean").item() == pytest.approx((1.5 + 3) / 2)     # per answer, then mean
    assert rl.agg_loss(loss, m, "seq-sum-const", max_len=4).item() == pytest.approx(6 / (2 * 4))
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        rl.agg_loss(loss, m, "median")


def test_on_policy_clipped_loss_has_the_reinforce_gradient():
    logp = torch.randn(4, 5, requires_grad=True)
    A, m = torch.randn(4, 1).expand(4, 5), (torch.rand(4, 5) > 0.3).float()
    g_ppo, = torch.autograd.grad(rl.ppo_policy_loss(logp, logp.detach(), A, m)[0], logp)
    g_pg, = torch.autograd.grad(rl.masked_mean(-A * logp, m), logp)                  # -A grad log pi
    torch.testing.assert_close(g_ppo, g_pg)


# ---- test-time metrics

def test_pass_at_k_matches_enumeration_and_majority_vote_by_hand():
    from itertools import combinations

    from nanoreason.search import majority_answer, pass_at_k
    n, c = 6, 2
    for k in (1, 2, 3, 5):
        draws = list(combinations([1] * c + [0] * (n - c), k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert majority_answer([3, None, 5, 5, 3, None, None]) == 3          # tie 3 vs 5: the first seen wins
    assert majority_answer([None, None]) is None


def test_k_larger_than_the_samples_is_a_clear_error():
    from nanoreason.config import ConfigError
    from nanoreason.search import pass_at_k, sample_metrics
    from nanoreason.tasks import Problem
    with pytest.raises(ConfigError, match="1 <= k <= n"):
        pass_at_k(4, 1, 8)
    with pytest.raises(ConfigError, match="k=8 is larger than the 4 samples"):
        sample_metrics([Problem("q", "#### 1", 1)], [[1, 2, 1, None]], 8)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean", "seq-sum-const"])
def test_gradient_accumulation_equals_one_big_batch(mode):
    """Uneven microbatches (answers of very different lengths): summing microbatch_agg_loss's shares gives the big
    batch's gradient exactly; the naive average of per-microbatch aggregates does not (token-mean, seq-mean)."""
    torch.manual_seed(0)
    w = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([10, 1, 2, 9, 3, 1])
    mask = (torch.arange(10)[None] < lengths[:, None]).double()
    loss_of = lambda rows: (w[rows] ** 2) * torch.arange(1, 11)      # noqa: E731  per-token losses (b, T)
    big = torch.autograd.grad(rl.agg_loss(loss_of(slice(None)), mask, mode, max_len=10), w)[0]
    parts = [slice(0, 1), slice(1, 4), slice(4, 6)]
    acc = sum(torch.autograd.grad(rl.microbatch_agg_loss(loss_of(p), mask[p], mode, mask.sum(), 6, 10), w)[0]
              for p in parts)
    assert torch.allclose(acc, big, rtol=1e-12, atol=1e-12)
    naive = sum(torch.autograd.grad(rl.agg_loss(loss_of(p), mask[p], mode, max_len=10) / len(parts), w)[0]
                for p in parts)
    assert not torch.allclose(naive, big, rtol=1e-3)          # uneven parts: every mode's naive average is wrong


def test_weighted_vote_keeps_the_count_best_of_n_drops():
    from nanoreason.search import pick, weighted_vote
    answers, scores = [3, 3, 5, None], [0.4, 0.4, 0.7, 0.9]
    assert weighted_vote(answers, scores) == 3 and pick(answers, scores) is None and pick(answers, scores[:3] + [0]) == 5
    assert pick(answers, scores, weighted=True) == 3 and weighted_vote([None], [1.0]) is None


# ---- the 2025 family: DAPO, GSPO, REINFORCE++ (hand-computed cases)

def test_dynamic_sampling_keeps_only_groups_whose_rewards_differ():
    r = torch.tensor([1., 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0])
    assert rl.informative_groups(r, 4).tolist() == [True, False, False, True]


def test_overlong_penalty_by_hand():
    # L_max = 10, L_cache = 4: free up to 6 tokens, then (6 - |o|) / 4 down to -1 at 10, and -1 beyond
    got = rl.overlong_penalty(torch.tensor([5, 6, 8, 10, 12]), max_len=10, cache=4)
    assert got.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])


def test_clip_higher_moves_only_the_upper_bound():
    mask = torch.ones(1, 1)
    up = (torch.tensor([[math.log(1.5)]]), torch.zeros(1, 1), torch.tensor([[1.0]]))       # r = 1.5, A = +1
    down = (torch.tensor([[math.log(0.5)]]), torch.zeros(1, 1), torch.tensor([[-1.0]]))    # r = 0.5, A = -1
    assert rl.ppo_policy_loss(*up, mask)[0].item() == pytest.approx(-1.2)                  # clipped at 1 + 0.2
    assert rl.ppo_policy_loss(*up, mask, clip_eps_high=0.28)[0].item() == pytest.approx(-1.28)
    assert rl.ppo_policy_loss(*down, mask, clip_eps_high=0.28)[0].item() == pytest.approx(0.8)   # 1 - 0.2 as before
    with pytest.raises(ValueError, match="clip_eps_high=0.1 is below clip_eps=0.2"):
        rl.ppo_policy_loss(*up, mask, clip_eps_high=0.1)


def test_gspo_uses_one_length_normalised_ratio_per_answer():
    # answer 0: token log-ratios (log 2, 0) -> s = exp(log 2 / 2) = sqrt 2, A = +1: clipped at 1.2, no gradient
    # answer 1: log-ratios (0, 0), one pad -> s = 1, A = -2: loss 2, d/d logp_t = -A * s / |o| / B = 0.5 per token
    logp = torch.tensor([[math.log(2), 0.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    loss, clipped = rl.gspo_policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -2.0]), mask, clip_eps=0.2)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2) and clipped.item() == 0.5
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0]]))


def test_reinforce_pp_returns_carry_the_kl_penalty_and_are_whitened_over_the_batch():
    # beta = 0.5, k1 = logp - ref = 0.2 on every token of answer 0 (score 1), 0 on answer 1 (score 0)
    logp = torch.tensor([[0.2, 0.2, 0.2], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    got = rl.reinforce_pp_advantages(torch.tensor([1.0, 0.0]), logp, torch.zeros(2, 3), mask, beta=0.5)
    returns = torch.tensor([[0.7, 0.8, 0.9], [0.0, 0.0, 0.0]])       # r = (-0.1, -0.1, 1 - 0.1), summed to the end
    flat = torch.tensor([0.7, 0.8, 0.9, 0.0, 0.0])
    want = (returns - flat.mean()) / flat.std() * mask                # whitened over the 5 tokens (unbiased std)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
