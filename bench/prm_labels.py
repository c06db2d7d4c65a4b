"""Math-Shepherd labels against the oracle: how often each way of labelling steps agrees with the step oracle, and
what a PRM trained on it buys at best-of-N.

    python bench/prm_labels.py                  # about 20 minutes; writes out/prm_labels/table.md

Each labelling (`--labellings`, see nanoreason/reward_models.py) trains `train_prm.py` at its defaults from the same
SFT policy; a finished run is kept (the oracle one is the default `out/prm/`). Then `k` answers per held-out problem
are sampled once and every PRM scores the same answers: its step verdicts against the oracle, and best-of-N with its
weakest step (PRM-min).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from nanoreason import reward_models as rm
from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import check, parse_args, run_main, run_stage
from nanoreason.report import write_summary, write_table
from nanoreason.search import best_of_n, sample_texts
from nanoreason.tasks import extract_answer, make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class PRMLabelsConfig:
    out_dir: str = "out/prm_labels"
    ckpt: str = "out/sft/ckpt.pt"         # the policy whose answers are labelled and reranked
    labellings: str = "oracle,mc_hard,mc_soft,perturbed"
    oracle_dir: str = "out/prm"           # the oracle-label PRM: train_prm.py's default run, kept if it matches
    mc_n: int = 8                         # rollouts per step for the Monte-Carlo labels
    k: int = 16                           # answers per held-out problem
    best_of: str = "1,4,16"
    eval_problems: int = 128
    max_new_tokens: int = 64
    seed: int = 0
    prm_args: str = ""                    # extra train_prm.py settings, key=value,key=value (small runs in tests)

    def __post_init__(self):
        self.names = [x for x in self.labellings.split(",") if x]
        for name in self.names:
            check(name in rm.LABELS, f"unknown labelling {name!r}; choose from {', '.join(rm.LABELS)}")
        check(all(x.strip().isdigit() and 0 < int(x) <= self.k for x in self.best_of.split(",") if x),
              f"--best_of must be comma-separated whole numbers in 1..k={self.k}, got {self.best_of!r}")
        self.ns = [int(x) for x in self.best_of.split(",") if x]


def number(v: str):
    """A --prm_args value as the number it spells (so a kept run's saved settings compare equal), else the text."""
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def main(c: PRMLabelsConfig):
    extra = {k: number(v) for k, v in (kv.split("=", 1) for kv in c.prm_args.split(",") if kv)}
    runs = {}
    for name in c.names:
        out = c.oracle_dir if name == "oracle" and c.oracle_dir else os.path.join(c.out_dir, name)
        runs[name] = run_stage(os.path.join(ROOT, "train_prm.py"), reuse=True, out_dir=out, init_from=c.ckpt,
                               labels=name, mc_n=c.mc_n, readout="likelihood", **extra)
    policy, tok, ckpt = load_model(c.ckpt)
    task, task_seed = task_of(ckpt["config"])
    test = make_problems(c.eval_problems, "test", task_seed, task)
    torch.manual_seed(c.seed)
    grouped = sample_texts(policy, tok, test, c.k, 1.0, max_new_tokens=c.max_new_tokens)
    answers = [[extract_answer(t) for t in ts] for ts in grouped]
    texts, reps = [t for ts in grouped for t in ts], [p for p in test for _ in range(c.k)]
    group = lambda xs: [xs[i * c.k:(i + 1) * c.k] for i in range(len(test))]  # noqa: E731
    rows = {"majority vote": {"best_of": {n: best_of_n(test, answers, None, n) for n in c.ns}},
            "oracle as the PRM": {"best_of": {n: best_of_n(test, answers, group(
                [rm.reduce_steps(rm.oracle_labels(p, t), "min") for p, t in zip(reps, texts)]), n) for n in c.ns}}}
    for name, s in runs.items():
        prm = rm.load_reward_model(s["checkpoint"], "prm", tok, task=task)
        mins = group([rm.reduce_steps(x, "min") for x in rm.score(prm, tok, reps, texts, "prm")])
        agree = s.get("mc_agreement_with_oracle", {})                   # at 1, 2, 4, ... rollouts: the last
        rows[f"PRM on {name} labels"] = {
            "label_agreement": 1.0 if name in ("oracle", "perturbed") else agree[max(agree, key=int)] if agree else None,
            "step_accuracy": rm.step_accuracy(prm, tok, reps, texts),
            "best_of": {n: best_of_n(test, answers, mins, n) for n in c.ns}}
    write_summary(os.path.join(c.out_dir, "summary.json"), {"rows": rows, "config": vars(c)})
    pct = lambda x: "—" if x is None else f"{x:.1%}"  # noqa: E731
    lines = [f"{c.k} answers per problem at T=1 from `{c.ckpt}` on {len(test)} held-out problems; every PRM trained "
             f"by `train_prm.py` at its defaults on one labelling (Monte-Carlo: {c.mc_n} rollouts per step); one run "
             "each, seed 0. Label agreement: the training labels against the oracle on the same steps (perturbed: "
             "exact by construction, on corrupted reference solutions instead of the policy's answers).", "",
             "| scorer | training labels = oracle | held-out step verdicts = oracle | "
             + " | ".join(f"best-of-{n}" for n in c.ns) + " |", "|---|---|---|" + "---|" * len(c.ns)]
    lines += [f"| {name} | {pct(r.get('label_agreement'))} | {pct(r.get('step_accuracy'))} | "
              + " | ".join(pct(r["best_of"][n]) for n in c.ns) + " |" for name, r in rows.items()]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(PRMLabelsConfig)))
