"""The calculator as a tool: what it gives the SFT model, and PPO trained with it and without it, on several seeds.

    python bench/tool_use.py                         # 2 arms x seeds 0,1,2 of PPO, 128 iterations each; ~30 min
    python bench/tool_use.py --seeds=0 --iters=20    # a quick look

Each arm runs `python train_ppo.py --tool=<arm> --seed=S --iters=<iters>` from the same SFT start, in
out_dir/<arm>/seed<S>/ (a finished run is kept). The start and every trained model are then scored the same way:
greedy accuracy on the same held-out problems with the calculator writing each `<<expr=` result and without it, and
the calculator calls (`<<expr=`) per answer. Writes out_dir/{results.json, table.md}: mean ± standard deviation over
seeds, PPO's own wall time (sampling, update, its evaluations), and what sampling with the tool costs: the start
model samples the held-out prompts with and without it, alternately, best of `repeats`.
"""
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from nanoreason.checkpoint import load_model, load_start
from nanoreason.config import int_list, parse_args, run_main, run_stage
from nanoreason.evaluate import accuracy, prompt_text
from nanoreason.report import mean_sd, write_table
from nanoreason.sampling import generate
from nanoreason.tasks import make_problems
from nanoreason.tools import calls_per_answer, make_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where train_ppo.py is
ARMS = ("none", "calculator")                                            # train_ppo.py --tool=


@dataclass
class ToolUseConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/tool_use"
    iters: int = 128                  # PPO iterations of 64 completions (8192 samples, as bench/compare_algorithms.py)
    seeds: str = "0,1,2"
    eval_problems: int = 256
    repeats: int = 5                  # timings of sampling with and without the tool, alternately; best kept

    def __post_init__(self):
        self.seed_list = int_list(self.seeds, "seeds")


def score(ckpt: str, test) -> dict:
    """Greedy accuracy with and without the calculator, and calculator calls per answer in each case."""
    model, tok, _ = load_model(ckpt)
    out = {}
    for name in ARMS:
        acc, texts = accuracy(model, tok, test, tool=make_tool(name, tok))
        out[f"accuracy_{name}"], out[f"calls_{name}"] = acc, calls_per_answer(texts)
    return out


def sampling_seconds(ckpt: str, test, repeats: int) -> dict:
    """Seconds to sample one answer (T = 1) to each of `test` with and without the calculator, best of `repeats`."""
    model, tok, _ = load_model(ckpt)
    prompts = [tok.encode(prompt_text(p.question)) for p in test]
    best = {name: float("inf") for name in ARMS}
    for r in range(repeats):
        for name in ARMS:
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            generate(model, prompts, 64, tok.eot_id, temperature=1.0, generator=gen, tool=make_tool(name, tok))
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def table(start: dict, runs: dict, c: ToolUseConfig) -> list[str]:
    lines = [f"PPO from `{c.init_from}`, {c.iters} iterations of 64 completions, seeds {c.seeds} (mean ± standard "
             f"deviation); greedy accuracy on {c.eval_problems} held-out problems, scored with the calculator writing "
             "every `<<expr=` result and without it. Calls: `<<expr=` per greedy answer (with the tool).", "",
             "| model | accuracy with the calculator | gain | accuracy without it | gain | calls per answer | "
             "PPO wall s |", "|---|---|---|---|---|---|---|",
             f"| SFT start | {start['accuracy_calculator']:.1%} | | {start['accuracy_none']:.1%} | | "
             f"{start['calls_calculator']:.2f} | |"]
    for arm, rs in runs.items():
        xs = lambda key: [r[key] for r in rs]                                        # noqa: E731
        gain = lambda key: mean_sd([x - start[key] for x in xs(key)], "+.1%")      # noqa: E731
        lines.append(f"| PPO {'with' if arm == 'calculator' else 'without'} the calculator | "
                     f"{mean_sd(xs('accuracy_calculator'))} | {gain('accuracy_calculator')} | "
                     f"{mean_sd(xs('accuracy_none'))} | {gain('accuracy_none')} | "
                     f"{mean_sd(xs('calls_calculator'), '.2f')} | {statistics.mean(xs('wall_seconds')):.0f} |")
    s = start["sampling_seconds"]
    lines += ["", f"Sampling one answer to each of the {c.eval_problems} prompts with the SFT start (T = 1, best of "
              f"{c.repeats}): {s['none']:.2f} s without the tool, {s['calculator']:.2f} s with it "
              f"({s['calculator'] / s['none']:.2f}x)."]
    return lines


def main(c: ToolUseConfig):
    os.makedirs(c.out_dir, exist_ok=True)
    _, _, task, task_seed = load_start(c.init_from)                   # trains the default SFT start if it is missing
    test = make_problems(c.eval_problems, "test", task_seed, task)
    start = {**score(c.init_from, test), "sampling_seconds": sampling_seconds(c.init_from, test, c.repeats)}
    runs = {}
    for arm in ARMS:
        runs[arm] = []
        for seed in c.seed_list:
            d = os.path.join(c.out_dir, arm, f"seed{seed}")
            s = run_stage(f"{ROOT}/train_ppo.py", init_from=c.init_from, out_dir=d, seed=seed, iters=c.iters,
                          eval_interval=c.iters, eval_problems=c.eval_problems, tool=arm, reuse=True)
            runs[arm].append({**score(os.path.join(d, "ckpt.pt"), test), "seed": seed,
                              "wall_seconds": s["wall_seconds"]})
            json.dump({"config": asdict(c), "start": start, "runs": runs},
                      open(os.path.join(c.out_dir, "results.json"), "w"), indent=2)   # partial results survive
    write_table(os.path.join(c.out_dir, "table.md"), table(start, runs, c))


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ToolUseConfig)))
