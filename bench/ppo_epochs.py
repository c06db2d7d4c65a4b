"""PPO's update epochs at equal wall time: the default 2 passes over each batch against 1 pass and more iterations.

    python bench/ppo_epochs.py                          # 2 epochs x 128 iterations vs 1 epoch x 176; seeds 0,1,2
    python bench/ppo_epochs.py --arms=2:128,1:176,1:128 --seeds=0

Half of a PPO iteration on the CPU is the update (docs/speed.md), so one epoch makes an iteration about a quarter
cheaper; the question is whether the second pass over the same samples is worth what more fresh samples would buy.
Each arm (epochs:iterations) runs `python train_ppo.py --epochs=E --iters=N --seed=S` from the same SFT start, in
out_dir/e<E>_i<N>/seed<S>/ (a finished run is kept); arms alternate seed by seed, so that a drift in the machine's
speed touches both. Writes out_dir/{results.json, table.md}: held-out greedy accuracy after PPO (its own evaluation,
256 problems), the gain over the start, mean ± standard deviation over seeds, and PPO's wall time.
"""
import json
import os
import statistics
from dataclasses import asdict, dataclass

from nanoreason.config import ConfigError, check, int_list, parse_args, run_main, run_stage
from nanoreason.report import mean_sd, write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where train_ppo.py is


@dataclass
class EpochsConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/ppo_epochs"
    arms: str = "2:128,1:176"         # epochs:iterations; 176 iterations of 1 epoch take about 128 of 2 here
    seeds: str = "0,1,2"
    eval_problems: int = 256

    def __post_init__(self):
        self.seed_list = int_list(self.seeds, "seeds")
        try:
            self.arm_list = [tuple(int(x) for x in a.split(":")) for a in self.arms.split(",") if a.strip()]
        except ValueError:
            raise ConfigError(f"arms must be epochs:iterations pairs like 2:128,1:176, got {self.arms!r}") from None
        check(bool(self.arm_list), "arms is empty")
        check(all(len(a) == 2 and min(a) > 0 for a in self.arm_list),
              f"each arm is epochs:iterations, both > 0, got --arms={self.arms}")


def main(c: EpochsConfig):
    runs = {f"{e}:{n}": [] for e, n in c.arm_list}
    for seed in c.seed_list:
        for e, n in c.arm_list:
            s = run_stage(f"{ROOT}/train_ppo.py", init_from=c.init_from, out_dir=f"{c.out_dir}/e{e}_i{n}/seed{seed}",
                          seed=seed, epochs=e, iters=n, eval_interval=n, eval_problems=c.eval_problems, reuse=True)
            runs[f"{e}:{n}"].append({k: s[k] for k in ("accuracy_before", "accuracy_after", "gain", "wall_seconds",
                                                       "samples")})
            os.makedirs(c.out_dir, exist_ok=True)
            json.dump({"config": asdict(c), "runs": runs}, open(f"{c.out_dir}/results.json", "w"), indent=2)
    lines = [f"PPO from `{c.init_from}` at the default settings but for `--epochs` and `--iters`; seeds {c.seeds} "
             f"(mean ± standard deviation); held-out greedy accuracy on {c.eval_problems} problems.", "",
             "| epochs | iterations | completions | accuracy after | gain | PPO wall s | s per iteration |",
             "|---|---|---|---|---|---|---|"]
    for (e, n), rs in zip(c.arm_list, runs.values()):
        wall = statistics.mean(r["wall_seconds"] for r in rs)
        lines.append(f"| {e} | {n} | {rs[0]['samples']} | {mean_sd([r['accuracy_after'] for r in rs])} | "
                     f"{mean_sd([r['gain'] for r in rs], '+.1%')} | {wall:.0f} | {wall / n:.2f} |")
    write_table(f"{c.out_dir}/table.md", lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(EpochsConfig)))
