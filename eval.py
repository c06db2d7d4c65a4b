"""Test-time compute on held-out problems: what k samples, a vote and a reward model buy.

    python eval.py --ckpt=out/sft/ckpt.pt --k=16
    python eval.py --ckpt=out/sft/ckpt.pt --k=64 --orm_ckpt=out/orm/ckpt.pt --prm_ckpt=out/prm/ckpt.pt --best_of=1,4,16,64
    python eval.py --k=16 --prm_ckpt=out/prm/ckpt.pt --beam=4        # + PRM-guided step-level beam search
    python eval.py --k=16 --prm_ckpt=out/prm/ckpt.pt --mmr=4         # + a vote over 4 diverse samples (MMR)
    python eval.py --ckpt=out/ppo/ckpt.pt --tool=calculator          # the calculator writes each <<expr= result
    python eval.py --k=64 --best_of=1,2,4,8,16,32,64 --orm_ckpt=out/orm/ckpt.pt --prm_ckpt=out/prm/ckpt.pt \
        --beam=1,2,4,8                                               # the test-time-compute figure (docs/reward_models.md)

Prints a Havrilla et al. 2024-style table — maj@1 (greedy), maj@k (majority vote of k samples), rerank@k (the
sample an ORM or a PRM scores highest; PRM steps aggregated by min, prod and last; and, as the ceiling, the task's step
oracle used as a PRM) and pass@k (some sample is right; unbiased estimator), optionally PRM-guided beam search — then
best-of-N for each N in `best_of`, with the verifier-weighted votes; saves it as JSON, and a PNG of accuracy against
the tokens sampled per problem (best-of-N at N samples' worth; beam search at what it sampled). With `--tool`, every
sample is written with the tool, and the greedy accuracy without it and the calls per answer are added.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from nanoreason import reward_models as rm
from nanoreason.checkpoint import load_model, task_of, with_data
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.evaluate import accuracy
from nanoreason.report import plot_curves, write_table
from nanoreason.search import best_of_n, mmr_select, pick, prm_beam_search, sample_metrics, sample_texts
from nanoreason.tasks import check_data, extract_answer, make_problems
from nanoreason.tools import calls_per_answer, make_tool
from nanoreason.training import pick_device


@dataclass
class EvalConfig:
    ckpt: str = "out/sft/ckpt.pt"         # the policy
    k: int = 16                           # samples per problem
    temperature: float = 1.0
    orm_ckpt: str = ""                    # an ORM checkpoint (train_orm.py) to rerank with
    prm_ckpt: str = ""                    # a PRM checkpoint (train_prm.py) to rerank with
    best_of: str = "1,4,16"               # N values for best-of-N (each <= k)
    beam: str = ""                        # beam widths (e.g. 1,2,4): also PRM-guided step-level beam search
    expand: int = 4                       # continuations per beam and step in the beam search
    mmr: int = 0                          # > 0: vote and coverage ("any right") of `mmr` of the k samples chosen by
                                          # maximal marginal relevance (relevance: PRM or ORM score), the `mmr`
                                          # top-scored (relevance alone) and the first `mmr` (plain sampling)
    eval_problems: int = 256
    data: str = ""                        # a GSM8K-format file whose held-out problems to use ("": the policy's task)
    test_data: str = ""                   # ... its held-out problems from this file instead ("": a fixed 20% of data)
    max_new_tokens: int = 64
    tool: str = "none"                    # calculator: it writes the result of each <<expr= (nanoreason/tools.py)
    out_dir: str = "out/eval"             # writes <out_dir>/<policy dir>_k<k>.json
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_data(self.data, self.test_data)
        try:
            self.ns = [int(x) for x in self.best_of.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--best_of must be comma-separated whole numbers like 1,4,16, got {self.best_of!r}") \
                from None
        try:
            self.beams = list(dict.fromkeys(int(x) for x in str(self.beam).split(",") if x.strip() and int(x) != 0))
        except ValueError:
            raise ConfigError(f"--beam must be comma-separated beam widths like 1,2,4, got {self.beam!r}") from None
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")

    def out_path(self) -> str:
        tool = "" if self.tool == "none" else f"_{self.tool}"
        return os.path.join(self.out_dir,
                            f"{os.path.basename(os.path.dirname(os.path.abspath(self.ckpt)))}_k{self.k}{tool}.json")


def main(c: EvalConfig):
    ns, out = c.ns, c.out_path()
    if os.path.isdir(out):                                    # before any sampling, not after
        raise ConfigError(f"{out} is a folder; eval.py writes its table to that path (move it, or use another --out_dir)")
    if c.k < 1:
        raise ConfigError(f"k must be >= 1, got {c.k}")
    if c.mmr > c.k:
        raise ConfigError(f"mmr={c.mmr} is larger than k={c.k}, the samples drawn per problem")
    if any(w < 1 for w in c.beams) or c.expand < 1:
        raise ConfigError(f"beam widths and expand must be >= 1, got --beam={c.beam} --expand={c.expand}")
    if c.beams and not c.prm_ckpt:
        raise ConfigError("--beam needs --prm_ckpt: the beam search is guided by a process reward model")
    if c.beams and c.tool != "none":
        raise ConfigError("--beam does not call tools: run the beam search without --tool")
    for n in ns:
        if not 0 < n <= c.k:
            raise ConfigError(f"best_of={n} is larger than k={c.k}, the samples drawn per problem (or < 1)")
    device = pick_device(c.device)
    policy, tok, ckpt = load_model(c.ckpt, kind="policy", device=device)
    task, task_seed = task_of(ckpt.get("config", {}))
    rms = {name: rm.load_reward_model(path, name, tok, device, task) for name, path in (("orm", c.orm_ckpt),
                                                                                       ("prm", c.prm_ckpt)) if path}
    test = make_problems(c.eval_problems, "test", task_seed, with_data(task, c.data, c.test_data))
    prefix = ckpt.get("extra", {}).get("prefix", [])            # return-conditioned policies ask for <|correct|>
    tool = make_tool(c.tool, tok)                                 # None, or the calculator every sample calls

    torch.manual_seed(c.seed)
    greedy, greedy_texts = accuracy(policy, tok, test, prefix=prefix, max_new_tokens=c.max_new_tokens, tool=tool)
    grouped = sample_texts(policy, tok, test, c.k, c.temperature, prefix, c.max_new_tokens, tool)   # k per problem
    answers = [[extract_answer(t) for t in ts] for ts in grouped]
    texts, reps = [t for ts in grouped for t in ts], [p for p in test for _ in range(c.k)]   # flat, for the RMs
    group = lambda xs: [xs[i * c.k:(i + 1) * c.k] for i in range(len(test))]  # noqa: E731
    scores = {}
    if "orm" in rms:
        scores["ORM"] = group(rm.score(rms["orm"], tok, reps, texts, "orm"))
    oracle = [rm.oracle_labels(p, t) for p, t in zip(reps, texts)]              # what a perfect PRM would say
    scores["oracle PRM-min"] = group([rm.reduce_steps(o, "min") for o in oracle])
    if "prm" in rms:
        steps = rm.score(rms["prm"], tok, reps, texts, "prm")
        for how in rm.STEP_REDUCTIONS:
            scores[f"PRM-{how}"] = group([rm.reduce_steps(s, how) for s in steps])

    k = c.k
    row, tool_stats = {"maj@1 (greedy)": greedy}, {}
    if tool is not None:                                        # the same model without the tool, and its calls
        row["maj@1 without the tool"], plain_texts = accuracy(policy, tok, test, prefix=prefix,
                                                              max_new_tokens=c.max_new_tokens)
        tool_stats = {"tool": c.tool, "calls_per_answer": calls_per_answer(greedy_texts),
                      "calls_per_answer_without": calls_per_answer(plain_texts),
                      "calls_per_sample": calls_per_answer(texts)}
    row.update(sample_metrics(test, answers, k))
    for name, sc in scores.items():
        row[f"rerank@{k} {name}"] = best_of_n(test, answers, sc, k)           # the best-scored of all k
    beam_points = []                                                           # (tokens per problem, accuracy)
    prm_min = lambda ps, ts: [rm.reduce_steps(x, "min") for x in rm.score(rms["prm"], tok, ps, ts, "prm")]  # noqa: E731
    for w in c.beams:
        found, sampled = prm_beam_search(policy, tok, prm_min, test, w, c.expand, temperature=c.temperature,
                                         max_new_tokens=c.max_new_tokens)
        row[f"PRM beam search (width {w} x {c.expand})"] = acc = \
            sum(extract_answer(t) == p.answer for p, t in zip(test, found)) / len(test)
        beam_points.append((sum(sampled) / len(test), acc))
    if c.mmr:
        rel = scores.get("PRM-min") or scores.get("ORM") or scores["oracle PRM-min"]
        chosen = [[a[j] for j in mmr_select(t, r, c.mmr)] for a, t, r in zip(answers, grouped, rel)]
        top = [[a[j] for j in mmr_select(t, r, c.mmr, lam=1.0)] for a, t, r in zip(answers, grouped, rel)]  # no diversity
        for name, sets in ((f"MMR-chosen {c.mmr}", chosen), (f"top-scored {c.mmr}", top),
                           (f"first {c.mmr}", [a[:c.mmr] for a in answers])):
            row[f"maj, {name}"] = sum(pick(a) == p.answer for p, a in zip(test, sets)) / len(test)
            row[f"any right, {name}"] = sum(p.answer in a for p, a in zip(test, sets)) / len(test)
    best = {"majority": {n: best_of_n(test, answers, None, n) for n in ns}}
    best.update({name: {n: best_of_n(test, answers, sc, n) for n in ns} for name, sc in scores.items()})
    best.update({f"{name}-weighted vote": {n: best_of_n(test, answers, scores[name], n, weighted=True) for n in ns}
                 for name in ("ORM", "PRM-min") if name in scores})
    per_sample = max(1.0, sum(len(tok.encode(t)) for t in texts) / len(texts))   # tokens of one sampled answer

    lines = [f"`{c.ckpt}`: {len(test)} held-out problems, k={k} samples at T={c.temperature:g}; one run, seed {c.seed}"
             + (f"; every answer written with the {c.tool} (tool calls per greedy answer: "
                f"{tool_stats['calls_per_answer']:.2f}, {tool_stats['calls_per_answer_without']:.2f} without it)"
                if tool else "") + ".",
             "", "| " + " | ".join(row) + " |", "|" + "---|" * len(row),
             "| " + " | ".join(f"{v:.1%}" for v in row.values()) + " |"]
    if ns:
        lines += ["", "Best-of-N accuracy (each N over the k/N disjoint groups of a problem's samples):", "",
                  "| scorer | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        lines += [f"| {m} | " + " | ".join(f"{best[m][n]:.1%}" for n in ns) + " |" for m in best]
    if beam_points:
        lines += ["", f"PRM-guided beam search against best-of-N at the same sampled tokens ({per_sample:.1f} tokens "
                  "per sampled answer):", "", "| beam | sampled tokens per problem | = N samples | accuracy |",
                  "|---|---|---|---|"]
        lines += [f"| width {w} x {c.expand} | {t:.0f} | {t / per_sample:.1f} | {a:.1%} |"
                  for w, (t, a) in zip(c.beams, beam_points)]
    write_table(out[:-len(".json")] + ".md", lines)
    os.makedirs(c.out_dir, exist_ok=True)
    json.dump({"table": row, "best_of_n": best, "tokens_per_sample": per_sample, "beam_search": beam_points,
               "k": k, "eval_problems": len(test), "temperature": c.temperature,
               "ckpt": c.ckpt, "orm_ckpt": c.orm_ckpt, "prm_ckpt": c.prm_ckpt, **tool_stats}, open(out, "w"), indent=2)
    x = "sampled tokens per problem"
    rows = [{x: n * per_sample, **{m: best[m][n] for m in best}} for n in ns]
    rows += [{x: t, "PRM beam search": a} for t, a in beam_points]
    if rows:
        plot_curves(out[:-len(".json")] + ".png", rows, [("accuracy", [*best, "PRM beam search"],
                                                          {"x": x, "xscale": "log"})],
                    title=f"best-of-N and PRM beam search, {len(test)} held-out problems")
    print(f"saved {out} and its table (.md)" + (" and figure (.png)" if rows else ""))


if __name__ == "__main__":
    run_main(lambda: main(parse_args(EvalConfig)))
