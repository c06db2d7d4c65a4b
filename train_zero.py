"""Pure RL from a pretrained base (DeepSeek-R1-Zero, on a laptop): no supervised fine-tuning, no worked solution read
anywhere — only a verifiable reward for a right final answer and for a well-formed final line.

    python train_zero.py                         # pretrains out/base/ first if it is missing; writes out/zero/
    python train_zero.py --seed=1
    python train_zero.py --init_from=out/base_w0/ckpt.pt --out_dir=out/zero_w0   # a base that never saw a worked step

The base (train_base.py) answers a held-out question the way its corpus did: mostly with a bare final number (a
guess), sometimes with worked steps, sometimes not at all. The trainer is train_grpo.py's group baseline (GRPO, run
as a stage), prompted with the raw question. What to watch in out/zero/zero.png: held-out accuracy, the share of
answers that reason before answering, and the response length rise together — RL does not teach the steps, the
base already knew them; it makes the model choose them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from nanoreason.checkpoint import load_checkpoint
from nanoreason.config import ConfigError, check, parse_args, run_main, run_stage
from nanoreason.report import plot_curves, read_jsonl, write_summary
from nanoreason.rewards import parse_weights

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_SCRIPT, GRPO_SCRIPT = os.path.join(HERE, "train_base.py"), os.path.join(HERE, "train_grpo.py")
VERIFIABLE = ("outcome", "format")     # what can be checked without a reference solution


@dataclass
class ZeroConfig:
    out_dir: str = "out/zero"
    init_from: str = "out/base/ckpt.pt"   # a base model (train_base.py); pretrained with its defaults if missing
    seed: int = 0
    rewards: str = "outcome=1,format=0.1"  # verifiable rewards only: outcome (right answer), format (a final line)
    iters: int = 100
    prompts_per_iter: int = 16
    group_size: int = 8
    temperature: float = 1.0
    lr: float = 3e-5
    max_new_tokens: int = 64
    eval_interval: int = 20
    eval_problems: int = 256
    resume: bool = False
    device: str = "auto"

    def __post_init__(self):
        unknown = set(parse_weights(self.rewards)) - set(VERIFIABLE)
        check(not unknown, f"--rewards: {', '.join(sorted(unknown))} is not verifiable without a reference solution; "
                           f"pure RL uses {' and '.join(VERIFIABLE)} only")


def main(cfg: ZeroConfig) -> dict:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train_zero.py starts its stages itself: run it with python, not torchrun")
    if not os.path.exists(cfg.init_from) and cfg.init_from != ZeroConfig.init_from:   # only the default is made
        raise ConfigError(f"{cfg.init_from}: no such base; make it first with python train_base.py "
                          f"--out_dir={os.path.dirname(cfg.init_from) or '.'} (and the corpus mix you mean)")
    if not os.path.exists(cfg.init_from):
        print(f"no base model at {cfg.init_from}: pretraining it first with python train_base.py")
        run_stage(BASE_SCRIPT, out_dir=os.path.dirname(cfg.init_from) or ".")
    base = load_checkpoint(cfg.init_from, kind="policy")
    stage = base.get("extra", {}).get("stage")
    if stage != "base":
        raise ConfigError(f"{cfg.init_from} is a {stage or 'non-base'} checkpoint, not a pretrained base: RL from it "
                          f"would measure RL after {stage or 'another stage'}, not R1-Zero (use train_grpo.py for that)")
    grpo = run_stage(GRPO_SCRIPT, init_from=cfg.init_from, out_dir=cfg.out_dir, seed=cfg.seed, algo="grpo",
                     rewards=cfg.rewards, iters=cfg.iters, prompts_per_iter=cfg.prompts_per_iter,
                     group_size=cfg.group_size, temperature=cfg.temperature, temperature_end=cfg.temperature,
                     lr=cfg.lr, max_new_tokens=cfg.max_new_tokens, eval_interval=cfg.eval_interval,
                     eval_problems=cfg.eval_problems, resume=cfg.resume, device=cfg.device)
    rows = read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl"))
    plot_curves(os.path.join(cfg.out_dir, "zero.png"), rows,
                [("held-out accuracy", ["accuracy"], {"x": "samples"}),
                 ("answers that show worked steps", ["worked_rate", "worked"], {"x": "samples"}),
                 ("... with a step the oracle accepts", ["reasoning_rate", "reasoning"], {"x": "samples"}),
                 ("response length (tokens)", ["response_length", "sampled_length"], {"x": "samples"}),
                 ("format (one final #### line)", ["format_rate", "format"], {"x": "samples"})],
                title=f"pure RL from a base: held-out accuracy {grpo['accuracy_before']:.1%} -> "
                      f"{grpo['accuracy_after']:.1%}, worked steps {grpo['worked_rate_before']:.0%} -> "
                      f"{grpo['worked_rate_after']:.0%}")
    summary = {**grpo, "stage": "zero", "base": cfg.init_from, "base_worked": base["config"].get("worked"),
               "base_answer_only": base["config"].get("answer_only"), "zero_config": vars(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: pure RL from {cfg.init_from}: accuracy {grpo['accuracy_before']:.1%} -> {grpo['accuracy_after']:.1%}, "
          f"format {grpo['format_rate_before']:.1%} -> {grpo['format_rate_after']:.1%}, worked steps "
          f"{grpo['worked_rate_before']:.1%} -> {grpo['worked_rate_after']:.1%}, reasoning "
          f"{grpo['reasoning_rate_before']:.1%} -> {grpo['reasoning_rate_after']:.1%}, response length "
          f"{grpo['response_length_before']:.1f} -> {grpo['response_length_after']:.1f} tokens -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroConfig)))
