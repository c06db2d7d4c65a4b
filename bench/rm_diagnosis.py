"""Why can reranking with a learned verifier end *below* one sample? What the ORM's and PRM's scores follow.

    python train_orm.py; python train_prm.py      # first (each makes out/sft/ if missing)
    python bench/rm_diagnosis.py                  # about 2 minutes; writes out/rm_diagnosis/table.md

For k sampled answers per held-out problem it measures, for each verifier:
  - ranking within a problem: AUC over (right, wrong) pairs of the same problem (0.5 = chance), the only ranking
    best-of-N uses; and pooled over all problems (what a verdict accuracy measures);
  - what else the score follows: rank correlation with the answer's length in tokens and its number of steps;
  - best-of-k with the verifier against three scorers that know nothing: a fresh random number per sample, a random
    number per distinct text (a text-keyed scorer: equal texts get equal scores, like any verifier), and the
    shortest answer; and the verifier-weighted vote (`search.weighted_vote`), which sums scores over equal answers.
A verifier that knows nothing but is keyed on the text picks uniformly among the *distinct* answers of a group; the
right answers of a problem are a few repeated texts and the wrong ones are many different texts, so that pick lands
below the share of right samples.
"""
from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass

import torch

from nanoreason import reward_models as rm
from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import write_summary, write_table
from nanoreason.search import best_of_n, sample_texts
from nanoreason.tasks import extract_answer, make_problems, split_steps


@dataclass
class RMDiagnosisConfig:
    out_dir: str = "out/rm_diagnosis"
    ckpt: str = "out/sft/ckpt.pt"         # the policy whose answers are reranked
    orm_ckpt: str = "out/orm/ckpt.pt"
    prm_ckpt: str = "out/prm/ckpt.pt"
    k: int = 16
    eval_problems: int = 128
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share the mean rank), 0-based."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for m in range(i, j + 1):
            r[order[m]] = (i + j) / 2
        i = j + 1
    return r


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks."""
    rx, ry = torch.tensor(ranks(xs)), torch.tensor(ranks(ys))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return (rx @ ry / (rx.norm() * ry.norm()).clamp_min(1e-12)).item()


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a right answer scores above a wrong one), ties counted half (the Mann-Whitney statistic); nan without a pair."""
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def within_auc(scores: list[list[float]], right: list[list[bool]]) -> float:
    """Mean AUC over the problems that have both right and wrong answers (nan if none has)."""
    per = [auc([s for s, r in zip(ss, rr) if r], [s for s, r in zip(ss, rr) if not r])
           for ss, rr in zip(scores, right) if any(rr) and not all(rr)]
    return sum(per) / len(per) if per else float("nan")


def main(c: RMDiagnosisConfig):
    for path in (c.ckpt, c.orm_ckpt, c.prm_ckpt):
        check(os.path.isfile(path), f"{path}: no such checkpoint; run python train_orm.py and python train_prm.py")
    policy, tok, ckpt = load_model(c.ckpt)
    task, task_seed = task_of(ckpt["config"])
    test = make_problems(c.eval_problems, "test", task_seed, task)
    torch.manual_seed(c.seed)
    grouped = sample_texts(policy, tok, test, c.k, c.temperature, max_new_tokens=c.max_new_tokens)
    answers = [[extract_answer(t) for t in ts] for ts in grouped]
    right = [[a == p.answer for a in aa] for p, aa in zip(test, answers)]
    texts, reps = [t for ts in grouped for t in ts], [p for p in test for _ in range(c.k)]
    group = lambda xs: [xs[i * c.k:(i + 1) * c.k] for i in range(len(test))]  # noqa: E731

    orm = rm.load_reward_model(c.orm_ckpt, "orm", tok, task=task)
    prm = rm.load_reward_model(c.prm_ckpt, "prm", tok, task=task)
    steps = rm.score(prm, tok, reps, texts, "prm")
    rng = random.Random(c.seed)
    scores = {"ORM": group(rm.score(orm, tok, reps, texts, "orm")),
              **{f"PRM-{how}": group([rm.reduce_steps(s, how) for s in steps]) for how in rm.STEP_REDUCTIONS},
              "oracle PRM-min": group([rm.reduce_steps(rm.oracle_labels(p, t), "min") for p, t in zip(reps, texts)]),
              "random per sample": group([rng.random() for _ in texts]),
              "random per distinct text": group([zlib.crc32(f"{c.seed}:{t}".encode()) / 2 ** 32 for t in texts]),
              "shortest answer": group([1 / (1 + len(tok.encode(t))) for t in texts])}     # > 0, for the vote
    length = [len(tok.encode(t)) for t in texts]
    n_steps = [len(split_steps(t, p.gsm8k)) for p, t in zip(reps, texts)]
    flat_right = [float(r) for rr in right for r in rr]

    share_right = sum(flat_right) / len(flat_right)
    distinct = [len({t for t, r in zip(ts, rr) if r}) / len(set(ts)) for ts, rr in zip(grouped, right)]
    rows = {}
    for name, sc in scores.items():
        flat = [s for ss in sc for s in ss]
        rows[name] = {"within_auc": within_auc(sc, right), "pooled_auc": auc(
            [s for s, r in zip(flat, flat_right) if r], [s for s, r in zip(flat, flat_right) if not r]),
            "rho_length": spearman(flat, length), "rho_steps": spearman(flat, n_steps),
            f"best_of_{c.k}": best_of_n(test, answers, sc, c.k),
            f"weighted_vote_{c.k}": best_of_n(test, answers, sc, c.k, weighted=True)}
    rows["ORM"]["verdicts"] = sum((x > 0.5) == r for x, r in zip([s for ss in scores["ORM"] for s in ss],
                                                                   flat_right)) / len(flat_right)
    rows["PRM-min"]["verdicts"] = rm.step_accuracy(prm, tok, reps, texts)         # each step's verdict vs the oracle
    summary = {"share_right": share_right, "share_right_among_distinct_texts": sum(distinct) / len(distinct),
               "rho_right_length": spearman(flat_right, length), "verifiers": rows, "config": vars(c)}
    os.makedirs(c.out_dir, exist_ok=True)
    write_summary(os.path.join(c.out_dir, "summary.json"), summary)
    lines = [f"{c.k} answers per problem at T={c.temperature:g} from `{c.ckpt}` on {len(test)} held-out problems; "
             f"one run. Right answers: {share_right:.1%} of samples, {summary['share_right_among_distinct_texts']:.1%} "
             f"of the distinct texts of a problem; rank correlation of being right with length: "
             f"{summary['rho_right_length']:+.2f}.", "",
             f"Verdicts: the ORM's (p > 0.5) against the final-answer check, the PRM's per step against the oracle.", "",
             f"| scorer | verdicts right | AUC within a problem | AUC pooled | ρ with length | ρ with steps | "
             f"best-of-{c.k} | weighted vote of {c.k} |", "|---|---|---|---|---|---|---|---|"]
    verdicts = {name: f"{r['verdicts']:.1%}" if "verdicts" in r else "" for name, r in rows.items()}
    lines += [f"| {name} | {verdicts[name]} | {r['within_auc']:.2f} | {r['pooled_auc']:.2f} | {r['rho_length']:+.2f} | "
              f"{r['rho_steps']:+.2f} | {r[f'best_of_{c.k}']:.1%} | {r[f'weighted_vote_{c.k}']:.1%} |"
              for name, r in rows.items()]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(RMDiagnosisConfig)))
