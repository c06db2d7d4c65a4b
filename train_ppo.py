"""Stage 2 — PPO with a critic, GAE and a KL penalty: the main job.

    python train_ppo.py                  # from out/sft/ckpt.pt (trained first if missing); writes out/ppo/
    python train_ppo.py --critic=separate --kl_coef=0.05 --rewards=outcome=1,format=0.1
    python train_ppo.py --resume

One iteration (Ouyang et al. 2022 / Ziegler et al. 2019 recipe, CleanRL-style loop):
  1. sample a completion for each of `batch_size` fresh training problems (temperature schedule), keeping each
     token's log-prob and hidden state: the old policy's forward, done by the sampler;
  2. score it: task rewards on tokens (outcome on the last token, optional step rewards on step ends),
     minus beta * KL(policy || SFT reference) on every token;
  3. GAE(gamma, lambda) with the critic's values -> advantages (whitened) and returns;
  4. `epochs` passes over minibatches: clipped policy loss + vf_coef * clipped value loss - ent_coef * entropy.

    torchrun --nproc_per_node=2 train_ppo.py --device=cpu    # DDP: each process samples and learns from half the
                                                              # batch; advantages are whitened over all of it
"""
from __future__ import annotations

import copy
import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from nanoreason import distributed, rl
from nanoreason import reward_models as rm
from nanoreason.checkpoint import load_start, resume, stage_config
from nanoreason.config import check, parse_args, run_main
from nanoreason.evaluate import evaluate_and_show
from nanoreason.report import plot_curves, write_summary
from nanoreason.rewards import SHAPINGS, parse_weights
from nanoreason.rollouts import completion_forward, old_logprobs, sample_groups
from nanoreason.rundir import RunDir
from nanoreason.tasks import check_data, make_problems
from nanoreason.tools import calls_per_answer, make_tool
from nanoreason.training import DTYPES, autocast, check_finite, clip_gradients, linear, pick_device

SFT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_sft.py")   # makes a missing start


@dataclass
class PPOConfig:
    out_dir: str = "out/ppo"
    init_from: str = "out/sft/ckpt.pt"    # the start; trained with the default SFT config if missing
    data: str = ""                        # a GSM8K-format .jsonl/.parquet to train and test on ("": the start's task)
    test_data: str = ""                   # ... and its held-out problems ("": a fixed 20% of --data)
    seed: int = 0
    # rewards
    rewards: str = "outcome=1"            # weighted sum of outcome, format, steps (e.g. "outcome=1,steps=0.2")
    shaping: str = "none"                 # step-reward shaping: none, clip, delta, clip+delta (Gao et al. 2024)
    prm_ckpt: str = ""                    # the `steps` reward from this learned PRM (train_prm.py), not the oracle
    tool: str = "none"                    # calculator: it writes the result of each <<expr= (GSM8K); its tokens
                                          # are context, kept out of every loss term (nanoreason/tools.py)
    # rollouts
    iters: int = 250                      # the gain levels off about here (3 seeds: docs/speed.md)
    batch_size: int = 64                  # completions per iteration
    max_new_tokens: int = 64
    temperature: float = 0.7              # linear schedule temperature -> temperature_end; < 1 focuses
    temperature_end: float = 0.7          # the failures on contested tokens rather than on the sampled tail
    # PPO
    epochs: int = 2
    minibatch_size: int = 32
    lr: float = 3e-5                      # small: Adam's first steps move every weight by ~lr
    critic_lr: float = 3e-3               # value head only: it starts at 0, Adam moves it ~critic_lr a step
    warmup_iters: int = 5                 # linear lr warmup: Adam's first steps are +-lr on every weight
    clip_eps: float = 0.2
    dual_clip: float = 0.0                # 0 = off; e.g. 3.0 (Ye et al. 2020)
    critic: str = "shared"                # shared: value head on the policy's trunk; separate: its own GPT copy
    vf_coef: float = 0.5
    value_clip: float = 0.2
    ent_coef: float = 0.0                 # linear schedule ent_coef -> ent_coef_end
    ent_coef_end: float = 0.0
    gamma: float = 1.0
    lam: float = 1.0                      # 1 = Monte-Carlo returns minus V (robust to a young critic)
    kl_coef: float = 0.02                 # beta of the per-token KL penalty
    kl_estimator: str = "k1"
    kl_target: float = 0.0                # > 0: adapt beta towards this KL per sequence (Ziegler et al. 2019)
    grad_clip: float = 1.0
    # evaluation, logging
    eval_interval: int = 50
    eval_problems: int = 256
    show_samples: int = 2                 # completions printed at each evaluation
    resume: bool = False
    device: str = "auto"
    dtype: str = "float32"                # bfloat16: autocast for the training forwards (weights, Adam stay fp32)
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory

    def __post_init__(self):
        check_data(self.data, self.test_data)
        self.weights = parse_weights(self.rewards)
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.shaping in SHAPINGS, f"unknown shaping {self.shaping!r}; choose from {', '.join(SHAPINGS)}")
        check(self.critic in ("shared", "separate"), f"critic must be 'shared' or 'separate', got {self.critic!r}")
        check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")
        check(self.kl_estimator in ("k1", "k2", "k3"), f"kl_estimator must be k1, k2 or k3, got {self.kl_estimator!r}")
        check(self.kl_target >= 0, f"kl_target must be >= 0, got {self.kl_target}")
        check(self.iters > 0 and self.batch_size > 0 and self.epochs > 0 and self.warmup_iters > 0,
              "iters, batch_size, epochs and warmup_iters must be > 0")
        check(0 < self.minibatch_size <= self.batch_size,
              f"minibatch_size must be in [1, batch_size={self.batch_size}], got {self.minibatch_size}")
        check(self.temperature > 0 and self.temperature_end > 0, "temperatures must be > 0")
        check(self.lr > 0 and self.critic_lr > 0, f"lr and critic_lr must be > 0, got {self.lr}, {self.critic_lr}")
        check(0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "gamma and lam must be in [0, 1]")
        check(self.clip_eps > 0, f"clip_eps must be > 0, got {self.clip_eps}")


@torch.no_grad()
def advantages(policy, ref, critic, b, beta: float, cfg: PPOConfig, temp: float):
    """Steps 2-3: per-token rewards (task scores - beta * KL to the reference), then GAE with the critic's values.
    Returns old log-probs, old values, whitened advantages, returns (all (B, T)) and the mean KL per answer.
    The old log-probs (and a shared critic's hidden states) are the sampler's when it kept them (with_logprobs): the
    policy's forward over these very tokens already ran while it wrote them, so only the reference runs here."""
    m = b.completion_mask
    old_logp, h = old_logprobs(policy, b, temp)                          # (B, T), (B, T, C)
    ref_logp, _, _ = completion_forward(ref, b.ids, b.mask, b.P, temp, with_entropy=False)
    hv = h if critic is policy else completion_forward(critic, b.ids, b.mask, b.P, temp, with_entropy=False)[2]
    old_values = critic.values(hv) * m
    rewards = rl.kl_penalty_rewards(b.scores, old_logp, ref_logp, m, beta, cfg.kl_estimator)
    adv, returns = rl.gae(rewards, old_values, m, cfg.gamma, cfg.lam)
    kl_seq = rl.masked_sum(rl.kl_estimate(old_logp, ref_logp, "k1"), m, 1).mean().item()
    return old_logp, old_values, distributed.masked_whiten(adv, m), returns, kl_seq   # over all ranks' tokens


def ppo_update(policy, critic, optimizer, params, b, old_logp, old_values, adv, returns, cfg: PPOConfig,
               temp: float, ent_coef: float, it: int) -> list[float]:
    """`epochs` passes over shuffled minibatches of the rollout batch `b`; returns the mean of
    [policy loss, value loss, entropy, clip fraction, approx KL, explained variance]. Under torchrun the models are
    DDP-wrapped and `b` is this rank's share: minibatches of minibatch_size / world, every token-mean scaled to its
    share of the token-mean over all ranks."""
    policy.train()
    critic.train()
    stats, m, n = [], b.completion_mask, b.ids.shape[0]
    for _ in range(cfg.epochs):
        for idx in torch.randperm(n).split(cfg.minibatch_size // distributed.world_size()):   # this rank's share
            mm = m[idx]
            with autocast(b.ids.device.type, cfg.dtype):
                logp, ent, h = completion_forward(policy, b.ids[idx], b.mask[idx], b.P, temp)
                hv = h if critic is policy else completion_forward(critic, b.ids[idx], b.mask[idx], b.P, temp, False)[2]
                values = distributed.unwrap(critic).values(hv).float()
            pg_loss, clipfrac = rl.ppo_policy_loss(logp, old_logp[idx], adv[idx], mm, cfg.clip_eps, cfg.dual_clip or None)
            v_loss = rl.value_loss(values, old_values[idx], returns[idx], mm, cfg.value_clip or None)
            entropy = rl.masked_mean(ent, mm)
            loss = (pg_loss + cfg.vf_coef * v_loss - ent_coef * entropy) * distributed.token_scale(mm)
            check_finite(loss, it, "PPO loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(params, cfg.grad_clip, it)
            optimizer.step()
            stats.append([pg_loss.item(), v_loss.item(), entropy.item(), clipfrac.item(),
                          rl.approx_kl(logp.detach(), old_logp[idx], mm).item(),
                          rl.explained_variance(values.detach(), returns[idx], mm).item()])
    return torch.tensor(stats).mean(0).tolist()


def train(cfg: PPOConfig) -> dict:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    for n, what in ((cfg.batch_size, "batch_size"), (cfg.minibatch_size, "minibatch_size")):
        distributed.per_rank(n, world, what)                          # a clear error now if it does not split
    run = RunDir(cfg.out_dir, "ppo", resume=cfg.resume, inputs=[cfg.init_from, cfg.prm_ckpt])   # checks only

    # ---- build: policy (+ value head), frozen reference, critic, optimizer
    policy, tok, task, task_seed = load_start(cfg.init_from, device, SFT_SCRIPT, cfg.data, cfg.test_data)
    t0 = time.time()                                   # PPO's own wall time (the automatic SFT not included)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    critic = policy if cfg.critic == "shared" else copy.deepcopy(policy)
    head = list(critic.value_head.parameters())                  # starts from scratch: its own, larger lr
    trunks = [p for p in policy.parameters() if all(p is not q for q in head)]
    if critic is not policy:
        trunks += [p for p in critic.parameters() if all(p is not q for q in head)]
    params = trunks + head
    optimizer = torch.optim.AdamW([{"params": trunks, "lr": cfg.lr}, {"params": head, "lr": cfg.critic_lr}],
                                  betas=(0.9, 0.95), weight_decay=0.0)
    policy.activation_checkpointing = critic.activation_checkpointing = cfg.activation_checkpointing
    ddp_policy = distributed.wrap(policy, world, heads=("value",) if critic is policy else ())   # DDP averages
    ddp_critic = ddp_policy if critic is policy else distributed.wrap(critic, world, heads=("value",))  # gradients
    step_scorer = rm.prm_step_scorer(cfg.prm_ckpt, tok, device, task) if cfg.prm_ckpt else None   # a learned PRM
    tool = make_tool(cfg.tool, tok)                    # None, or the calculator the sampler and evaluation call
    kl_ctl = rl.AdaptiveKLController(cfg.kl_coef, cfg.kl_target) if cfg.kl_target > 0 else None
    beta, start, wall_before, acc_before = cfg.kl_coef, 0, 0.0, None
    test = make_problems(cfg.eval_problems, "test", task_seed, task)

    if cfg.resume:                                     # the same stage with the same settings, or one line
        ck = resume(run.checked_resume(stage_config(task, task_seed, cfg)), run.ckpt, tok, policy, optimizer)
        if critic is not policy:
            critic.load_state_dict(ck["extra"]["critic_model"])
        start, beta = ck["step"], ck["extra"]["beta"]
        wall_before, acc_before = ck["extra"]["wall_seconds"], ck["extra"]["accuracy_before"]
        if kl_ctl:
            kl_ctl.beta = beta
    log = run.start() if main else None                 # every check has passed: now the folder may change
    if main:
        print(f"policy {policy.num_params() / 1e6:.2f}M params; critic: {cfg.critic}; device {device}"
              + (f"; {world} processes" if world > 1 else ""))

    def evaluate(it):
        acc = evaluate_and_show(policy, tok, test, it, cfg.show_samples, tool=tool)
        log.log(step=it, accuracy=acc, samples=it * cfg.batch_size, wall=wall_before + time.time() - t0)
        return acc

    def save(it, acc_before):
        extra = {"wall_seconds": wall_before + time.time() - t0, "beta": beta,
                 "accuracy_before": acc_before}
        if critic is not policy:
            extra["critic_model"] = critic.state_dict()
        run.save(policy, tok, optimizer, it, stage_config(task, task_seed, cfg), extra=extra)

    if acc_before is None and main:
        acc_before = evaluate(0)
    acc = log.find("accuracy")["accuracy"] if main else None    # the start's, or a resumed run's last evaluation
    gen = torch.Generator(device=device)
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc="ppo", disable=not main)
    for it in bar:
        frac = it / max(1, cfg.iters - 1)
        temp = linear(cfg.temperature, cfg.temperature_end, frac)
        ent_coef = linear(cfg.ent_coef, cfg.ent_coef_end, frac)
        for g, base in zip(optimizer.param_groups, (cfg.lr, cfg.critic_lr)):
            g["lr"] = base * min(1.0, (it + 1) / cfg.warmup_iters)
        torch.manual_seed(cfg.seed * 1_000_003 + it)       # resumable: iteration `it` is the same run after run

        # ---- 1. rollouts: one completion for each of batch_size fresh problems (this rank's share of them)
        problems, b = sample_groups(policy, tok, task, cfg.batch_size, 1, cfg.seed * 1_000_003 + it, cfg.weights,
                                    cfg.max_new_tokens, temp, gen, shaping=cfg.shaping, step_scorer=step_scorer,
                                    rank=rank, world=world, tool=tool, with_logprobs=True)
        m = b.completion_mask                          # (B, T) the tokens the model wrote: the tool's are not actions
        # ---- 2-3. rewards with the KL penalty, advantages
        old_logp, old_values, adv, returns, kl_seq = advantages(policy, ref, critic, b, beta, cfg, temp)

        # ---- 4. PPO epochs over minibatches
        s = ppo_update(ddp_policy, ddp_critic, optimizer, params, b, old_logp, old_values, adv, returns, cfg, temp,
                       ent_coef, it)
        kl_seq = distributed.mean(kl_seq)                                 # the same beta on every rank
        if kl_ctl:
            beta = kl_ctl.update(kl_seq, cfg.batch_size)
        row = distributed.all_mean(dict(                                      # averaged over ranks
            step=it + 1, reward=rl.masked_sum(b.scores, m, 1).mean().item(), train_accuracy=b.correct.mean().item(),
            format=b.formatted.mean().item(), kl=kl_seq, beta=beta, entropy=s[2], policy_loss=s[0],
            value_loss=s[1], clipfrac=s[3], approx_kl=s[4], explained_variance=s[5],
            response_length=m.sum(1).mean().item(), steps_per_answer=b.n_steps.mean().item(),
            tool_calls=calls_per_answer(b.texts), tool_tokens=b.tool_mask.sum(1).mean().item(),
            temperature=temp, wall=wall_before + time.time() - t0))
        if not main:
            continue
        log.log(**row)
        bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{kl_seq:.3f}")
        if (it + 1) % cfg.eval_interval == 0 or it + 1 == cfg.iters:
            tqdm.write(f"iter {it + 1}: a sampled training completion (reward {b.scores[0].sum():.2f}):\n"
                       f"  Q: {problems[0].question}\n  A: {b.texts[0]!r}")
            acc = evaluate(it + 1)
            save(it + 1, acc_before)

    distributed.cleanup()
    if not main:
        return {}
    wall = wall_before + time.time() - t0
    rows = log.rows
    plot_curves(os.path.join(cfg.out_dir, "ppo.png"), rows,
                [("held-out / train accuracy", ["accuracy", "train_accuracy"]), ("KL to SFT (per answer)", ["kl"]),
                 ("entropy, clip fraction", ["entropy", "clipfrac"]), ("critic", ["explained_variance"])],
                title=f"PPO: held-out accuracy {acc_before:.1%} -> {acc:.1%}")
    summary = {"accuracy_before": acc_before, "accuracy_after": acc, "gain": acc - acc_before,
               "eval_problems": len(test), "wall_seconds": round(wall, 1), "iters": cfg.iters,
               "samples": cfg.iters * cfg.batch_size, "critic": cfg.critic, "tool": cfg.tool, "checkpoint": run.ckpt,
               "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: held-out accuracy {acc_before:.1%} -> {acc:.1%} in {wall:.0f}s -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(PPOConfig)))
