"""Distillation against the same-size student trained by SFT alone and by RL alone, at equal student compute.

    python bench/distillation.py                                       # teacher: out/ppo/ckpt.pt (best RL model)
    python bench/distillation.py --teacher_ckpt=out/sft_long/ckpt.pt --out_dir=out/distill_bench_strong
    python bench/distillation.py --arms=sft,token_forward              # some arms; the table lists every finished one

An arm whose folder holds a summary.json is kept, not re-run (delete the folder to redo it).

Every arm starts from the same small student (`start_iters` steps of its own SFT, n_layer x n_embd below) and then
makes `iters` updates on 32 sequences each (RL: iters / 2 GRPO iterations of 16 prompts x 4): the same number of
student updates and sequences. What differs is where the text and the targets come from; the wall time (the
teacher's forwards and the sampling included) is reported beside each. Writes <out_dir>/{results.json, table.md,
distillation.png} and one sub-directory per arm.
"""
import dataclasses
import json
import os
from dataclasses import dataclass

from nanoreason.checkpoint import continued_sft_settings, load_start
from nanoreason.config import ConfigError, parse_args, run_main, run_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where the train_*.py scripts are

# arm -> train_distill.py flags (sft and rl are the baselines)
DISTILL_ARMS = {
    "token_forward": dict(mode="token", kind="forward"),
    "token_reverse": dict(mode="token", kind="reverse"),
    "token_jsd": dict(mode="token", kind="jsd"),
    "token_forward_T2": dict(mode="token", kind="forward", temperature=2.0),   # softer targets (Hinton et al.)
    "token_forward_curriculum": dict(mode="token", kind="forward", curriculum=True),
    "token_teacher_samples": dict(mode="token", data="teacher", kind="forward"),
    "sequence": dict(mode="sequence"),
    "on_policy_reverse": dict(mode="on_policy", kind="reverse"),
    "on_policy_jsd": dict(mode="on_policy", kind="jsd"),
}
ARMS = ("sft", "rl", *DISTILL_ARMS)


@dataclass
class BenchConfig:
    teacher_ckpt: str = "out/ppo/ckpt.pt"
    out_dir: str = "out/distill_bench"
    n_layer: int = 2                   # the student: 0.14M parameters (the default teacher: 0.88M)
    n_head: int = 2
    n_embd: int = 64
    start_iters: int = 1200            # the student's own SFT: the common start of every arm
    iters: int = 600                   # student updates per arm, 32 sequences each
    lr: float = 3e-4                   # constant, every arm (the start's final SFT learning rate)
    arms: str = ",".join(ARMS)
    max_new_tokens: int = 64
    eval_problems: int = 256


def run_arm(c: BenchConfig, arm: str, start: str, d: str):
    if arm == "sft":                   # more of the same: reference solutions, cross-entropy
        return run_stage(f"{ROOT}/train_sft.py", **continued_sft_settings(start), out_dir=d, iters=c.iters)
    if arm == "rl":                    # GRPO on the outcome reward, 64 sequences per iteration
        return run_stage(f"{ROOT}/train_grpo.py", init_from=start, out_dir=d, iters=c.iters // 2, prompts_per_iter=16,
                         group_size=4, max_new_tokens=c.max_new_tokens, eval_interval=10**9,
                         eval_problems=c.eval_problems, show_samples=0)
    return run_stage(f"{ROOT}/train_distill.py", teacher_ckpt=c.teacher_ckpt, init_from=start, out_dir=d,
                     iters=c.iters, batch_size=32, lr=c.lr, min_lr=c.lr, warmup_iters=1, eval_interval=10**9,
                     eval_problems=c.eval_problems, max_new_tokens=c.max_new_tokens, **DISTILL_ARMS[arm])


def main(c: BenchConfig):
    arms = [a.strip() for a in c.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ConfigError(f"unknown arm {bad[0]!r} in arms; choose from {', '.join(ARMS)}")
    teacher, tok, task, task_seed = load_start(c.teacher_ckpt, "cpu", make_with=f"{ROOT}/train_ppo.py")
    start = os.path.join(c.out_dir, "start", "ckpt.pt")
    if not os.path.exists(start):      # the teacher's task, test set and tokenizer settings (the same BPE results)
        run_stage(f"{ROOT}/train_sft.py", out_dir=os.path.dirname(start), **dataclasses.asdict(task), seed=task_seed,
                  vocab_size=tok.n_vocab - len(tok.special_ids), block_size=teacher.cfg.block_size,
                  n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, iters=c.start_iters,
                  eval_interval=c.start_iters, eval_problems=c.eval_problems, max_new_tokens=c.max_new_tokens)
    for arm in arms:
        d = os.path.join(c.out_dir, arm)
        if os.path.exists(os.path.join(d, "summary.json")):    # finished earlier: kept (delete the folder to redo)
            print(f"{arm}: kept the finished run in {d}")
            continue
        run_arm(c, arm, start, d)
    table(c)


def table(c: BenchConfig):
    start = json.load(open(os.path.join(c.out_dir, "start", "summary.json")))
    results = {}
    for arm in ARMS:
        path = os.path.join(c.out_dir, arm, "summary.json")
        if os.path.exists(path):
            s = json.load(open(path))
            results[arm] = {"accuracy": s["accuracy_after"], "gain": s["accuracy_after"] - start["accuracy_after"],
                            "wall_seconds": s["wall_seconds"], "teacher_accuracy": s.get("teacher_accuracy")}
    teacher_acc = next((r["teacher_accuracy"] for r in results.values() if r["teacher_accuracy"] is not None), None)
    out = {"teacher_ckpt": c.teacher_ckpt, "teacher_accuracy": teacher_acc, "start_accuracy": start["accuracy_after"],
           "student_params": start["params"], "iters": c.iters, "arms": results}
    json.dump(out, open(os.path.join(c.out_dir, "results.json"), "w"), indent=2)
    lines = [f"teacher {c.teacher_ckpt}: " + (f"{teacher_acc:.1%}" if teacher_acc is not None else "?") +
             f"; student {start['params'] / 1e6:.2f}M parameters, start {start['accuracy_after']:.1%} "
             f"({c.start_iters} SFT steps); every arm then {c.iters} updates x 32 sequences", "",
             "| arm | held-out accuracy | gain over the start | wall s |", "|---|---|---|---|"]
    for arm, r in results.items():
        lines.append(f"| {arm} | {r['accuracy']:.1%} | {r['gain'] * 100:+.1f} | {r['wall_seconds']:.0f} |")
    text = "\n".join(lines)
    open(os.path.join(c.out_dir, "table.md"), "w").write(text + "\n")
    plot(os.path.join(c.out_dir, "distillation.png"), out)
    print(text)


def plot(path: str, out: dict):
    """One bar per arm; the start and the teacher as horizontal lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(out["arms"])
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 3, 4))
    colors = ["tab:gray" if n in ("sft", "rl") else "tab:blue" for n in names]
    ax.bar(range(len(names)), [100 * out["arms"][n]["accuracy"] for n in names], color=colors)
    ax.axhline(100 * out["start_accuracy"], color="k", ls=":", label=f"student start {out['start_accuracy']:.1%}")
    if out["teacher_accuracy"] is not None:
        ax.axhline(100 * out["teacher_accuracy"], color="tab:red", ls="--",
                   label=f"teacher {out['teacher_accuracy']:.1%}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("held-out greedy accuracy (%)")
    ax.set_title(f"a {out['student_params'] / 1e6:.2f}M student, {out['iters']} updates each (grey: baselines)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(BenchConfig)))
