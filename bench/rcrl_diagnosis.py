"""Why return-conditioned RL loses accuracy here: does the model learn to read its tag?

    python bench/rcrl_diagnosis.py              # 4 runs of train_rcrl.py (4 iterations each); about 8 min on 2 cores

Arms, all from one SFT start with 4 iterations of 256 problems x 4 samples: the default RCRL; the same with 4 epochs
per iteration; the same at lr 1e-3; and the untagged control (`--condition=False`: fine-tune on every sample, right or
wrong, with no tag), which is what RCRL becomes when the tag is ignored. Each model answers the held-out problems
greedily three ways: with no tag, asked for <|correct|>, asked for <|incorrect|>. If the tag were learned, the
<|correct|> answers would beat the <|incorrect|> ones; "same text" is the share of problems whose two answers are
identical. Finished runs are kept. Writes out/rcrl_diagnosis/table.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from nanoreason.checkpoint import load_model, load_start
from nanoreason.config import parse_args, run_main, run_stage
from nanoreason.evaluate import accuracy
from nanoreason.report import read_jsonl, write_table
from nanoreason.tasks import make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"RCRL (default)": {}, "RCRL, 4 epochs per iteration": {"epochs": 4}, "RCRL, lr 1e-3": {"lr": 1e-3},
        "untagged control (--condition=False)": {"condition": False}}


@dataclass
class RCRLDiagnosisConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/rcrl_diagnosis"
    iters: int = 4
    prompts_per_iter: int = 256
    eval_problems: int = 256


@torch.no_grad()
def asked(ckpt: str, test) -> dict:
    """Greedy held-out accuracy with no tag, with <|correct|> and with <|incorrect|>; share of identical answers."""
    model, tok, _ = load_model(ckpt)
    good, bad = tok.special_ids["<|correct|>"], tok.special_ids["<|incorrect|>"]
    (none, _), (acc_good, texts_good), (acc_bad, texts_bad) = [accuracy(model, tok, test, prefix=p)
                                                               for p in ([], [good], [bad])]
    same = sum(a == b for a, b in zip(texts_good, texts_bad)) / len(test)
    return {"none": none, "correct": acc_good, "incorrect": acc_bad, "same": same}


def main(c: RCRLDiagnosisConfig):
    _, _, task, task_seed = load_start(c.init_from)
    test = make_problems(c.eval_problems, "test", task_seed, task)
    rows = {"the SFT start (no training)": {**asked(c.init_from, test), "train": None}}
    for i, (name, settings) in enumerate(ARMS.items()):
        d = os.path.join(c.out_dir, f"arm{i}")
        s = run_stage(f"{ROOT}/train_rcrl.py", reuse=True, init_from=c.init_from, out_dir=d, iters=c.iters,
                      prompts_per_iter=c.prompts_per_iter, eval_problems=c.eval_problems, **settings)
        last = [r for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if "train_accuracy" in r][-1]
        rows[name] = {**asked(s["checkpoint"], test), "train": last["train_accuracy"]}
    lines = [f"`python bench/rcrl_diagnosis.py`: {c.iters} iterations of {c.prompts_per_iter} problems x 4 samples "
             f"from `{c.init_from}`, one run per arm (seed 0). Greedy accuracy on {c.eval_problems} held-out "
             "problems when asked three ways.", "",
             "| model | no tag | asked for <\\|correct\\|> | asked for <\\|incorrect\\|> | same text under both tags | "
             "sampled accuracy, last iteration |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        train = f"{r['train']:.1%}" if r["train"] is not None else ""
        lines.append(f"| {name} | {r['none']:.1%} | {r['correct']:.1%} | {r['incorrect']:.1%} | {r['same']:.0%} | "
                     f"{train} |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(RCRLDiagnosisConfig)))
