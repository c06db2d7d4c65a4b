"""Stage 3 — the critic-free family: GRPO, Dr.GRPO, DAPO, GSPO, RLOO, REINFORCE and REINFORCE++. No critic: a
completion's baseline is the other completions of the same prompt (REINFORCE++: of the whole batch).

    python train_grpo.py                      # GRPO from out/sft/ckpt.pt (trained first if missing) -> out/grpo/
    python train_grpo.py --algo=dr_grpo      # Dr.GRPO: no std division, a constant length normaliser
    python train_grpo.py --algo=dapo         # clip-higher, token-level loss, overlong shaping, dynamic sampling
    python train_grpo.py --algo=gspo --clip_eps=3e-4 --epochs=2      # one importance ratio per answer
    python train_grpo.py --algo=reinforce_pp --kl_coef=0.01          # KL in the reward, batch-whitened returns
    python train_grpo.py --algo=rloo         # leave-one-out baseline
    python train_grpo.py --algo=reinforce    # group-mean baseline, no clip, no KL (nanochat's recipe)
    # "pure RL" from a model that never saw a solution:
    python train_grpo.py --scratch --rewards=outcome=1,format=0.5 --temperature=1.2 --temperature_end=0.8 --ent_coef=0.01 --out_dir=out/pure_rl

One iteration: sample `group_size` completions for each of `prompts_per_iter` fresh problems, score them (one number
each), turn the scores into advantages within each group, then `epochs` passes of the loss below.

               advantage A_i (on every token of o_i)    loss over tokens (rl.agg_loss)    clip   KL (k3) in the loss
  grpo         (r_i - mean_g r) / std_g r               seq-mean: 1/|o_i| per answer       yes    kl_coef
  dr_grpo      r_i - mean_g r                           seq-sum-const: 1/max_new_tokens    yes    kl_coef
  dapo         as grpo, r_i + overlong penalty          token-mean                         higher kl_coef
  gspo         as grpo                                  one ratio per answer (seq-mean)    per answer kl_coef
  rloo         r_i - mean_{j != i} r_j                  token-mean                         yes    kl_coef
  reinforce    r_i - mean_g r                           token-mean                         no     no
  reinforce_pp whitened sum_{s>=t} (r_s - kl_coef KL_s) token-mean                         yes    in the reward

DAPO (Yu et al. 2025) also drops the groups whose completions all score the same and refills the batch from fresh
prompts (dynamic sampling, up to `max_refills` extra rounds; the log counts the extra samples as `refill_samples`).
GSPO (Zheng et al. 2025) clips a length-normalised ratio per answer; its paper uses clip_eps around 3e-4.
REINFORCE++ (Hu 2025) puts the k1 KL to the start into each token's reward and whitens the returns over the batch.

A group whose completions all score the same has A = 0 everywhere: no signal. The log reports that fraction
(`zero_signal_groups`) and the length of wrong answers (`len_wrong`), which GRPO's 1/|o_i| lets grow (Liu et al. 2025).

    torchrun --nproc_per_node=2 train_grpo.py --device=cpu   # DDP: each process samples and learns from half the
                                                              # prompts (whole groups); rank 0 evaluates and writes
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
from nanoreason.model import GPT
from nanoreason.report import plot_curves, write_summary
from nanoreason.rewards import SHAPINGS, parse_weights
from nanoreason.rollouts import cat_batches, completion_forward, old_logprobs, sample_groups, select
from nanoreason.rundir import RunDir
from nanoreason.tasks import check_data, check_steps, make_problems, shows_work
from nanoreason.tools import calls_per_answer, make_tool
from nanoreason.training import DTYPES, autocast, check_finite, clip_gradients, linear, pick_device

ALGOS = ("grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce", "reinforce_pp")
AGG = {"grpo": "seq-mean", "dr_grpo": "seq-sum-const", "dapo": "token-mean", "gspo": "seq-mean", "rloo": "token-mean",
       "reinforce": "token-mean", "reinforce_pp": "token-mean"}      # each algorithm's loss over tokens (rl.agg_loss)

SFT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_sft.py")   # makes a missing start


@dataclass
class GRPOConfig:
    out_dir: str = "out/grpo"
    init_from: str = "out/sft/ckpt.pt"    # the start; trained with the default SFT config if missing
    data: str = ""                        # a GSM8K-format .jsonl/.parquet to train and test on ("": the start's task)
    test_data: str = ""                   # ... and its held-out problems ("": a fixed 20% of --data)
    scratch: bool = False                 # "pure RL": random weights of init_from's shape, with its tokenizer and task
                                          # (a model that never saw a solution)
    seed: int = 0
    algo: str = "grpo"                    # grpo, dr_grpo, dapo, gspo, rloo, reinforce, reinforce_pp (table above)
    dr_grpo: bool = False                 # the older spelling of --algo=dr_grpo
    rewards: str = "outcome=1"            # weighted sum of outcome, format, steps (one number per completion)
    shaping: str = "none"                 # step-reward shaping before the sum: none, clip, delta, clip+delta
    prm_ckpt: str = ""                    # the `steps` reward from this learned PRM (train_prm.py), not the oracle
    tool: str = "none"                    # calculator: it writes the result of each <<expr= (GSM8K); its tokens
                                          # are context, kept out of every loss term (nanoreason/tools.py)
    iters: int = 150
    prompts_per_iter: int = 16
    group_size: int = 4                   # completions per prompt; the batch is prompts_per_iter * group_size
    max_new_tokens: int = 64
    temperature: float = 1.0              # linear schedule temperature -> temperature_end
    temperature_end: float = 1.0
    epochs: int = 1                       # passes over the batch; 1 = on-policy (the ratio is 1, clip is inactive)
    minibatch_size: int = 64              # completions per optimizer step
    lr: float = 3e-5                      # as PPO: at 1e-4 and 3e-4 (tried) accuracy falls; see docs/algorithms.md
    warmup_iters: int = 5
    clip_eps: float = 0.2
    clip_eps_high: float = 0.28           # dapo: the upper clip bound (clip-higher), >= clip_eps
    overlong_cache: int = 16              # dapo: over the last this-many tokens before max_new_tokens the reward falls
    max_refills: int = 4                  # dapo: extra sampling rounds that replace groups with no signal
    max_samples: int = 0                  # stop once this many completions are sampled, refills included (0: iters)
    loss_agg: str = ""                    # "": the algorithm's own (table above); token-mean, seq-mean, seq-sum-const
    kl_coef: float = 0.0                  # k3 KL to the start in the loss (GRPO paper: 0.04; Dr.GRPO, DAPO: 0)
    ent_coef: float = 0.0                 # linear schedule ent_coef -> ent_coef_end (entropy bonus)
    ent_coef_end: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 25
    eval_problems: int = 256
    show_samples: int = 2
    resume: bool = False
    device: str = "auto"
    dtype: str = "float32"                # bfloat16: autocast for the training forwards (weights, Adam stay fp32)
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory

    def __post_init__(self):
        check_data(self.data, self.test_data)
        self.weights = parse_weights(self.rewards)
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.shaping in SHAPINGS, f"unknown shaping {self.shaping!r}; choose from {', '.join(SHAPINGS)}")
        check(self.algo in ALGOS, f"unknown algo {self.algo!r}; choose from {', '.join(ALGOS)}")
        check(not self.dr_grpo or self.algo in ("grpo", "dr_grpo"), f"--dr_grpo modifies algo=grpo, not "
              f"algo={self.algo} (the new form is --algo=dr_grpo)")
        if self.dr_grpo:
            self.algo = "dr_grpo"
        check(self.clip_eps_high >= self.clip_eps, f"clip_eps_high={self.clip_eps_high} is below clip_eps="
              f"{self.clip_eps}: clip-higher needs the upper bound >= the lower")
        check(self.loss_agg in ("", "token-mean", "seq-mean", "seq-sum-const"), f"unknown loss_agg {self.loss_agg!r}; "
              "choose from token-mean, seq-mean, seq-sum-const")
        check(self.algo != "gspo" or self.loss_agg in ("", "seq-mean"), f"algo=gspo has one ratio per answer: it "
              f"cannot use loss_agg={self.loss_agg} (leave it, or seq-mean)")
        check(self.overlong_cache >= 0 and self.max_refills >= 0 and self.max_samples >= 0,
              "overlong_cache, max_refills and max_samples must be >= 0")
        check(self.group_size >= 2, f"group_size must be >= 2 for a group baseline (got {self.group_size}): "
                                    "a group of one is its own baseline and has no signal")
        check(self.algo != "reinforce" or (self.epochs == 1 and self.kl_coef == 0),
              "algo=reinforce is on-policy without a KL term: it needs epochs=1 and kl_coef=0")
        check(self.iters > 0 and self.prompts_per_iter > 0 and self.epochs > 0 and self.warmup_iters > 0,
              "iters, prompts_per_iter, epochs and warmup_iters must be > 0")
        check(0 < self.minibatch_size, f"minibatch_size must be > 0, got {self.minibatch_size}")
        check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")
        check(self.lr > 0 and self.temperature > 0 and self.temperature_end > 0, "lr and temperatures must be > 0")

    @property
    def batch_size(self) -> int:
        return self.prompts_per_iter * self.group_size


def advantages(rewards, cfg: GRPOConfig):
    """(B,) sequence rewards -> (B,) advantages, per the table above."""
    if cfg.algo == "rloo":
        return rl.rloo_advantages(rewards, cfg.group_size)
    if cfg.algo == "reinforce_pp":                  # per token, from the batch: made in `update` (it needs log-probs)
        return rewards
    return rl.group_advantages(rewards, cfg.group_size, scale=cfg.algo not in ("dr_grpo", "reinforce"))


def group_stats(b, rewards, G: int) -> dict:
    """What the group methods are judged by: groups with no signal, and how long right and wrong answers are."""
    lengths, right = b.completion_mask.sum(1), b.correct.bool()
    r = rewards.view(-1, G)
    return dict(zero_signal_groups=(r.max(1).values == r.min(1).values).float().mean().item(),
                len_correct=lengths[right].mean().item() if right.any() else float("nan"),
                len_wrong=lengths[~right].mean().item() if (~right).any() else float("nan"))


def off_policy(cfg: GRPOConfig, rows: int) -> bool:
    """Does the update need the sampling policy's log-probs (the ratio's denominator)? Yes when a step follows an
    earlier one on the same batch (more than one epoch, or more than one minibatch of this rank's `rows`), and for
    REINFORCE++'s KL reward."""
    return (cfg.epochs > 1 or cfg.minibatch_size // distributed.world_size() < rows
            or (cfg.algo == "reinforce_pp" and cfg.kl_coef > 0))


def update(policy, ref, optimizer, b, adv, cfg: GRPOConfig, temp: float, ent_coef: float, it: int) -> list[float]:
    """`epochs` passes over minibatches; returns the mean of [policy loss, KL to the start, entropy, clip fraction].
    Under torchrun `policy` is DDP-wrapped and `b` is this rank's share of the batch: every rank takes minibatches
    of minibatch_size / world, and token-means are scaled to their share of the global token-mean."""
    m, n = b.completion_mask, b.ids.shape[0]
    mb = cfg.minibatch_size // distributed.world_size()
    agg = cfg.loss_agg or AGG[cfg.algo]
    pp = cfg.algo == "reinforce_pp"
    with torch.no_grad():
        old_logp = old_logprobs(policy, b, temp)[0] if off_policy(cfg, n) else None   # the sampler's (rollouts.py)
        ref_logp = completion_forward(ref, b.ids, b.mask, b.P, temp, False)[0] if cfg.kl_coef else None
    if pp:                                                          # (B, T): KL in the reward, whitened returns
        kl_pair = (old_logp, ref_logp) if cfg.kl_coef else (torch.zeros_like(m),) * 2
        adv = rl.reinforce_pp_advantages(adv, *kl_pair, m, cfg.kl_coef)
    policy.train()
    stats = []
    for _ in range(cfg.epochs):
        for idx in torch.randperm(n).split(mb):
            mm = m[idx]
            s_tok = distributed.token_scale(mm)                               # 1 with one process
            with autocast(b.ids.device.type, cfg.dtype):
                logp, ent, _ = completion_forward(policy, b.ids[idx], b.mask[idx], b.P, temp)
            A = adv[idx] * mm if pp else adv[idx, None] * mm                  # (b, T): A_i on every token of o_i
            old = old_logp[idx] if old_logp is not None else logp.detach()
            if cfg.algo == "reinforce":                                        # L = -mean_t A_i log pi(o_it)
                pg, clipfrac = rl.agg_loss(-A * logp, mm, agg), torch.zeros(())
            elif cfg.algo == "gspo":                                           # one ratio per answer
                pg, clipfrac = rl.gspo_policy_loss(logp, old, adv[idx], mm, cfg.clip_eps)
            else:
                pg, clipfrac = rl.ppo_policy_loss(logp, old, A, mm, cfg.clip_eps, agg=agg, max_len=cfg.max_new_tokens,
                                                  clip_eps_high=cfg.clip_eps_high if cfg.algo == "dapo" else None)
            kl = rl.kl_loss(logp, ref_logp[idx], mm, "k3") if cfg.kl_coef and not pp else torch.zeros(())
            entropy = rl.masked_mean(ent, mm)
            loss = pg * (s_tok if agg == "token-mean" else 1.0) + (cfg.kl_coef * kl - ent_coef * entropy) * s_tok
            check_finite(loss, it, f"{cfg.algo} loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(policy.parameters(), cfg.grad_clip, it)
            optimizer.step()
            stats.append([pg.item(), kl.item(), entropy.item(), clipfrac.item()])
    return torch.tensor(stats).mean(0).tolist()


def dynamic_sampling(sample, cfg: GRPOConfig, it: int):
    """DAPO's dynamic sampling: `sample(seed)` rounds of fresh prompts, keeping the groups whose rewards differ
    (rl.informative_groups), until prompts_per_iter such groups are kept or max_refills extra rounds are spent.
    Returns (problems, batch, rewards, extra completions sampled); the batch keeps its groups of group_size next to
    each other. If no group has a signal the last round is returned whole: its advantages are all 0."""
    G, parts, extra = cfg.group_size, [], 0
    for attempt in range(cfg.max_refills + 1):
        problems, b, rewards = sample(cfg.seed * 1_000_003 + it + attempt * 7_919_993)   # attempt 0: the usual seed
        extra += len(problems) if attempt else 0
        keep = rl.informative_groups(rewards, G).repeat_interleave(G).nonzero().flatten().tolist()
        if keep:
            parts.append(([problems[i] for i in keep], select(b, keep), rewards[keep]))
        if sum(len(p) for p, _, _ in parts) >= cfg.batch_size:
            break
    if not parts:
        return problems, b, rewards, extra
    n = cfg.batch_size
    ps = [p for part, _, _ in parts for p in part][:n]
    return ps, cat_batches([x for _, x, _ in parts], n), torch.cat([r for _, _, r in parts])[:n], extra


def train(cfg: GRPOConfig) -> dict:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    for n, what in ((cfg.prompts_per_iter, "prompts_per_iter"), (cfg.minibatch_size, "minibatch_size")):
        distributed.per_rank(n, world, what)                          # a clear error now if it does not split
    run = RunDir(cfg.out_dir, "grpo", resume=cfg.resume, inputs=[cfg.init_from, cfg.prm_ckpt])   # checks only
    name = cfg.algo
    check(cfg.algo != "dapo" or world == 1, "algo=dapo's dynamic sampling changes each process's batch size: run it "
          "in one process")

    # ---- build: policy, frozen start (for the KL term), optimizer
    policy, tok, task, task_seed = load_start(cfg.init_from, device, SFT_SCRIPT, cfg.data, cfg.test_data)
    if cfg.scratch:                                  # keep the tokenizer and the task, forget the weights
        policy = GPT(policy.cfg).to(device)
    step_scorer = rm.prm_step_scorer(cfg.prm_ckpt, tok, device, task) if cfg.prm_ckpt else None   # a learned PRM
    tool = make_tool(cfg.tool, tok)                    # None, or the calculator the sampler and evaluation call
    t0 = time.time()
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl_coef else None
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    policy.activation_checkpointing = cfg.activation_checkpointing
    ddp = distributed.wrap(policy, world)                      # no critic, no RM; DDP averages gradients over ranks
    test = make_problems(cfg.eval_problems, "test", task_seed, task)
    start, wall_before, before = 0, 0.0, None         # before: the start's held-out stats
    sampled = 0                                        # completions sampled so far (DAPO's refills included)
    if cfg.resume:                                     # the same stage with the same settings, or one line
        ck = resume(run.checked_resume(stage_config(task, task_seed, cfg)), run.ckpt, tok, policy, optimizer)
        start, wall_before = ck["step"], ck["extra"]["wall_seconds"]
        sampled = ck["extra"].get("samples", start * cfg.batch_size)
        before = ck["extra"].get("before") or {"accuracy": ck["extra"]["accuracy_before"]}   # an older checkpoint
    log = run.start() if main else None                 # every check has passed: now the folder may change
    if main:
        print(f"{name}: policy {policy.num_params() / 1e6:.2f}M params; {cfg.prompts_per_iter} prompts x "
              f"{cfg.group_size} samples per iteration; device {device}" + (f"; {world} processes" if world > 1 else ""))

    def evaluate(it):        # accuracy, format and reasoning rates, response length of greedy answers
        stats = evaluate_and_show(policy, tok, test, it, cfg.show_samples, stats=True, tool=tool)
        log.log(step=it, **stats, samples=sampled, wall=wall_before + time.time() - t0)
        return stats

    if before is None and main:
        before = evaluate(0)
    after = {k: v for k, v in log.find("accuracy").items() if k in before} if main else None   # the latest evaluation
    gen = torch.Generator(device=device)
    last = start                                       # the last iteration run
    if 0 < cfg.max_samples <= sampled:                 # a resumed run that had spent its budget
        start = cfg.iters
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=name, disable=not main)
    for it in bar:
        frac = it / max(1, cfg.iters - 1)
        temp = linear(cfg.temperature, cfg.temperature_end, frac)
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * min(1.0, (it + 1) / cfg.warmup_iters)
        torch.manual_seed(cfg.seed * 1_000_003 + it)       # resumable: iteration `it` is the same run after run

        # ---- rollouts: G completions per prompt, next to each other (this rank's share of the prompts)
        def sample(seed):
            problems, b = sample_groups(policy, tok, task, cfg.prompts_per_iter, cfg.group_size, seed, cfg.weights,
                                        cfg.max_new_tokens, temp, gen, shaping=cfg.shaping, step_scorer=step_scorer,
                                        rank=rank, world=world, tool=tool,
                                        with_logprobs=off_policy(cfg, cfg.prompts_per_iter * cfg.group_size // world))
            rewards = b.scores.sum(1)              # (B,) one number per completion (shaped step rewards summed)
            if cfg.algo == "dapo":                 # soft overlong punishment
                generated = b.rollout.completion_mask.sum(1)        # the sampler's length: tool tokens count too
                rewards = rewards + rl.overlong_penalty(generated, cfg.max_new_tokens, cfg.overlong_cache)
            return problems, b, rewards
        if cfg.algo == "dapo":                     # dynamic sampling: drop groups with no signal, refill the batch
            problems, b, rewards, refill = dynamic_sampling(sample, cfg, it)
        else:
            (problems, b, rewards), refill = sample(cfg.seed * 1_000_003 + it), 0
        # ---- group advantages, then the update
        adv = advantages(rewards, cfg)
        s = update(ddp, ref, optimizer, b, adv, cfg, temp, linear(cfg.ent_coef, cfg.ent_coef_end, frac), it)
        sampled += cfg.batch_size + refill            # refills: DAPO, which runs in one process
        last = it + 1
        row = distributed.all_mean(dict(                                      # averaged over ranks
            step=it + 1, samples=sampled, reward=rewards.mean().item(), refill_samples=refill,
            train_accuracy=b.correct.mean().item(), format=b.formatted.mean().item(),
            steps_per_answer=b.n_steps.mean().item(), sampled_length=b.completion_mask.sum(1).float().mean().item(),
            worked=sum(shows_work(t) for t in b.texts) / len(b.texts),                           # measured only
            tool_calls=calls_per_answer(b.texts), tool_tokens=b.tool_mask.sum(1).mean().item(),
            reasoning=sum(any(check_steps(p, t)) for p, t in zip(problems, b.texts)) / len(problems),
            **group_stats(b, rewards, cfg.group_size), policy_loss=s[0], kl=s[1], entropy=s[2], clipfrac=s[3],
            temperature=temp, wall=wall_before + time.time() - t0))
        budget_spent = 0 < cfg.max_samples <= sampled  # every rank stops at the same iteration
        if main:
            log.log(**row)
            bar.set_postfix(reward=f"{row['reward']:.2f}", no_signal=f"{row['zero_signal_groups']:.2f}")
            if (it + 1) % cfg.eval_interval == 0 or it + 1 == cfg.iters or budget_spent:
                after = evaluate(it + 1)
                extra = {"wall_seconds": wall_before + time.time() - t0, "before": before, "samples": sampled}
                run.save(policy, tok, optimizer, it + 1, stage_config(task, task_seed, cfg), extra=extra)
        if budget_spent:
            break

    distributed.cleanup()
    if not main:
        return {}
    wall = wall_before + time.time() - t0
    plot_curves(os.path.join(cfg.out_dir, f"{name}.png"), log.rows,
                [("held-out / train accuracy", ["accuracy", "train_accuracy"]),
                 ("answers with worked steps / a checked step",
                  ["worked", "worked_rate", "reasoning", "reasoning_rate"]),
                 ("groups with no signal", ["zero_signal_groups"]),
                 ("answer length (tokens)", ["len_correct", "len_wrong"]), ("entropy", ["entropy"])],
                title=f"{name}: held-out accuracy {before['accuracy']:.1%} -> {after['accuracy']:.1%}")
    summary = {"algo": name, "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
               "gain": after["accuracy"] - before["accuracy"],
               **{f"{k}_{when}": s.get(k, float("nan"))            # nan: not measured by an older checkpoint
                  for k in ("format_rate", "worked_rate", "reasoning_rate", "response_length", "tool_calls")
                  for when, s in (("before", before), ("after", after))},
               "eval_problems": len(test), "wall_seconds": round(wall, 1), "iters": last,
               "samples": sampled, "tool": cfg.tool, "checkpoint": run.ckpt, "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: {name} held-out accuracy {before['accuracy']:.1%} -> {after['accuracy']:.1%} in {wall:.0f}s "
          f"-> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(GRPOConfig)))
