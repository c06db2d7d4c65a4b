"""Does a summed step reward get hacked, and do Gao et al.'s Clip and Delta shapings stop it?

    python bench/reward_hacking.py                            # oracle step rewards; 4 PPO runs from out/sft/
    python bench/reward_hacking.py --shapings=none,delta --iters=60
    python bench/reward_hacking.py --prm_ckpt=out/prm/ckpt.pt --out_dir=out/hacking_learned    # a learned PRM

Each run is `train_ppo.py` with rewards = outcome + step rewards (one per reasoning line, from the step oracle, which
by design keeps calling a *repeated* correct step correct) and one shaping. The table: held-out accuracy and the
number of steps per sampled answer at the start and the end, and the summed step reward. A hacked reward shows as
steps per answer going up while accuracy does not. Writes out/hacking/{results.json, table.md, hacking.png}.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataclasses import dataclass  # noqa: E402

from nanoreason.config import ConfigError, parse_args, run_main  # noqa: E402
from nanoreason.report import read_jsonl  # noqa: E402
from nanoreason.rewards import SHAPINGS  # noqa: E402
from train_ppo import PPOConfig, train  # noqa: E402


@dataclass
class HackConfig:
    sft_ckpt: str = "out/sft/ckpt.pt"
    out_dir: str = "out/hacking"
    shapings: str = ",".join(SHAPINGS)
    step_weight: float = 1.0          # rewards = outcome=1,steps=<step_weight>
    iters: int = 150
    lr: float = 3e-5
    temperature: float = 0.7          # sampling temperature of the PPO rollouts
    prm_ckpt: str = ""                # a learned PRM (train_prm.py) pays the steps instead of the oracle
    batch_size: int = 64
    eval_problems: int = 256
    plot_only: bool = False           # rebuild the table and the plot from finished runs in out_dir


def run_dir(c: HackConfig, shaping: str) -> str:
    return os.path.join(c.out_dir, shaping.replace("+", "_"))


def main(c: HackConfig):
    shapings = [s.strip() for s in c.shapings.split(",") if s.strip()]
    bad = [s for s in shapings if s not in SHAPINGS]
    if bad:
        raise ConfigError(f"unknown shaping {bad[0]!r} in shapings; choose from {', '.join(SHAPINGS)}")
    for shaping in shapings if not c.plot_only else []:
        train(PPOConfig(sft_ckpt=c.sft_ckpt, out_dir=run_dir(c, shaping), rewards=f"outcome=1,steps={c.step_weight}",
                        shaping=shaping, iters=c.iters, lr=c.lr, eval_interval=10**9, prm_ckpt=c.prm_ckpt,
                        temperature=c.temperature, temperature_end=c.temperature, batch_size=c.batch_size,
                        minibatch_size=min(32, c.batch_size), eval_problems=c.eval_problems))
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


def plot(path: str, curves: dict, c: HackConfig):
    """Steps per sampled answer and train accuracy over PPO iterations, one line per shaping."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for shaping, rows in curves.items():
        for ax, key in zip(axes, ("steps_per_answer", "train_accuracy")):
            ys = [r[key] for r in rows]
            smooth = [sum(ys[max(0, i - 9):i + 1]) / len(ys[max(0, i - 9):i + 1]) for i in range(len(ys))]
            ax.plot([r["step"] for r in rows], smooth, label=shaping)
    for ax, label in zip(axes, ("steps per sampled answer (mean of 10)", "sampled answers right (mean of 10)")):
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"summed step rewards ({'learned PRM' if c.prm_ckpt else 'oracle'}) under each shaping")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(HackConfig)))
