"""Does a summed step reward get hacked, and do Gao et al.'s Clip and Delta shapings stop it?

    python bench/reward_hacking.py                            # oracle step rewards; 4 PPO runs from out/sft/
    python bench/reward_hacking.py --shapings=none,delta --iters=60
    python bench/reward_hacking.py --prm_ckpt=out/prm/ckpt.pt --out_dir=out/hacking_learned    # a learned PRM
    python bench/reward_hacking.py --algo=grpo --out_dir=out/hacking_grpo      # a sequence-level learner (GRPO)
    python bench/reward_hacking.py --overview=out/hacking,out/hacking_grpo     # one figure: steps per answer, per run

Each run is `train_ppo.py` (or `train_grpo.py`, --algo=grpo) with rewards = outcome + step rewards (one per reasoning line, from the step oracle, which
by design keeps calling a *repeated* correct step correct) and one shaping. The table: held-out accuracy and the
number of steps per sampled answer at the start and the end, and the summed step reward. A hacked reward shows as
steps per answer going up while accuracy does not. Writes out/hacking/{results.json, table.md, hacking.png}.
"""
import json
import os
from dataclasses import dataclass

from nanoreason.config import ConfigError, parse_args, run_main, run_stage
from nanoreason.report import read_jsonl
from nanoreason.rewards import SHAPINGS, parse_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where the train_*.py scripts are


@dataclass
class HackConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/hacking"
    algo: str = "ppo"                 # ppo (per-token returns, a critic) or grpo (one summed reward per answer)
    shapings: str = ",".join(SHAPINGS)
    step_weight: float = 1.0          # rewards = outcome=1,steps=<step_weight>
    iters: int = 150
    lr: float = 3e-5
    temperature: float = 0.7          # sampling temperature of the PPO rollouts
    prm_ckpt: str = ""                # a learned PRM (train_prm.py) pays the steps instead of the oracle
    batch_size: int = 64
    eval_problems: int = 256
    plot_only: bool = False           # rebuild the table and the plot from finished runs in out_dir
    overview: str = ""                # comma-separated finished out_dirs: draw them side by side, run nothing


def run_dir(c: HackConfig, shaping: str) -> str:
    return os.path.join(c.out_dir, shaping.replace("+", "_"))


def run(c: HackConfig, shaping: str):
    common = dict(init_from=c.init_from, out_dir=run_dir(c, shaping), rewards=f"outcome=1,steps={c.step_weight}",
                  shaping=shaping, iters=c.iters, lr=c.lr, prm_ckpt=c.prm_ckpt, temperature=c.temperature,
                  temperature_end=c.temperature, eval_problems=c.eval_problems)
    if c.algo == "ppo":
        run_stage(f"{ROOT}/train_ppo.py", **common, batch_size=c.batch_size, minibatch_size=min(32, c.batch_size),
                  eval_interval=10**9)
    else:  # grpo: batch_size answers = batch_size // 4 prompts x 4
        run_stage(f"{ROOT}/train_grpo.py", **common, prompts_per_iter=max(1, c.batch_size // 4), group_size=4,
                  eval_interval=25)


def main(c: HackConfig):
    if c.overview:
        return overview([d.strip() for d in c.overview.split(",") if d.strip()], c.out_dir)
    if c.algo not in ("ppo", "grpo"):
        raise ConfigError(f"algo must be ppo or grpo, got {c.algo!r}")
    shapings = [s.strip() for s in c.shapings.split(",") if s.strip()]
    bad = [s for s in shapings if s not in SHAPINGS]
    if bad:
        raise ConfigError(f"unknown shaping {bad[0]!r} in shapings; choose from {', '.join(SHAPINGS)}")
    for shaping in shapings if not c.plot_only else []:
        run(c, shaping)
    results, curves = {}, {}
    for shaping in shapings:
        d = run_dir(c, shaping)
        if not os.path.exists(os.path.join(d, "summary.json")):
            raise ConfigError(f"{d}/summary.json: missing; run without --plot_only first")
        s = json.load(open(os.path.join(d, "summary.json")))
        rows = [r for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if "steps_per_answer" in r]
        curves[shaping] = rows
        first, last = rows[:10], rows[-10:]
        mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        results[shaping] = {"accuracy_before": s["accuracy_before"], "accuracy_after": s["accuracy_after"],
                            "steps_start": mean(first, "steps_per_answer"), "steps_end": mean(last, "steps_per_answer"),
                            "reward_start": mean(first, "reward"), "reward_end": mean(last, "reward"),
                            "train_accuracy_end": mean(last, "train_accuracy")}
    os.makedirs(c.out_dir, exist_ok=True)
    json.dump(results, open(os.path.join(c.out_dir, "results.json"), "w"), indent=2)
    lines = ["| shaping | held-out accuracy | steps per answer (first → last 10 iterations) | reward (first → last 10) |",
             "|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['accuracy_before']:.1%} → {r['accuracy_after']:.1%} | {r['steps_start']:.2f} → "
                     f"{r['steps_end']:.2f} | {r['reward_start']:.2f} → {r['reward_end']:.2f} |")
    table = "\n".join(lines)
    open(os.path.join(c.out_dir, "table.md"), "w").write(table + "\n")
    plot(os.path.join(c.out_dir, "hacking.png"), curves, c)
    print(table)


def smooth(ys: list, n: int = 10) -> list:
    return [sum(ys[max(0, i - n + 1):i + 1]) / len(ys[max(0, i - n + 1):i + 1]) for i in range(len(ys))]


def plot(path: str, curves: dict, c: HackConfig):
    """Steps per sampled answer and train accuracy over PPO iterations, one line per shaping."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for shaping, rows in curves.items():
        for ax, key in zip(axes, ("steps_per_answer", "train_accuracy")):
            ax.plot([r["step"] for r in rows], smooth([r[key] for r in rows]), label=shaping)
    for ax, label in zip(axes, ("steps per sampled answer (mean of 10)", "sampled answers right (mean of 10)")):
        ax.set_xlabel(f"{c.algo.upper()} iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{c.algo.upper()}, summed step rewards ({'learned PRM' if c.prm_ckpt else 'oracle'}) under each shaping")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COLORS = {"none": "tab:red", "delta": "tab:blue", "clip": "tab:orange", "clip_delta": "tab:purple",
          "control": "tab:gray"}


def overview(dirs: list, out_dir: str):
    """One panel per finished experiment (a bench out_dir): steps per sampled answer under each shaping, and the
    held-out accuracy before -> after in the legend. Written to <out_dir>/overview.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, axes = plt.subplots(1, len(dirs), figsize=(4.2 * len(dirs), 3.8), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], dirs):
        runs = sorted(r for r in os.listdir(d) if os.path.exists(os.path.join(d, r, "summary.json"))) \
            if os.path.isdir(d) else []
        if not runs:
            raise ConfigError(f"overview: {d} holds no finished run (no <shaping>/summary.json)")
        summaries = {r: json.load(open(os.path.join(d, r, "summary.json"))) for r in runs}
        for r, summary in summaries.items():
            rows = [x for x in read_jsonl(os.path.join(d, r, "metrics.jsonl")) if "steps_per_answer" in x]
            ax.plot([x["step"] for x in rows], smooth([x["steps_per_answer"] for x in rows]), color=COLORS.get(r),
                    label=f"{r}: {summary['accuracy_before']:.0%} → {summary['accuracy_after']:.0%}")
        s = summaries.get("none", summaries[runs[-1]])        # the title: the unshaped run's learner and reward
        cfg = s["config"]
        reward = "outcome only" if not parse_weights(cfg["rewards"]).get("steps") else \
            ("learned PRM" if cfg.get("prm_ckpt") else "oracle steps")
        ax.set_title(f"{s.get('algo', 'ppo').upper()}, {reward}\n{d}", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks([1, 2, 3, 5, 10, 20, 30])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="shaping: held-out acc.", title_fontsize=8)
    axes[0][0].set_ylabel("steps per sampled answer (mean of 10, log)")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, "overview.png"), dpi=110)
    plt.close(fig)
    print(f"wrote {os.path.join(out_dir, 'overview.png')}")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(HackConfig)))
