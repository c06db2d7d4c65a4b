"""The project's shape: the library never imports a script, nothing edits sys.path, one flag name per concept, the
docs' generated tables come from out/, and the speedrun's report card is built from the stages' files."""
import glob
import json
import os
import re
import subprocess

import pytest

from nanoreason.config import ConfigError, parse_args, run_stage
from tests.conftest import run_entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sources(*patterns):
    return [p for pat in patterns for p in glob.glob(os.path.join(ROOT, pat), recursive=True)]


def test_the_library_never_imports_a_script():
    scripts = {os.path.basename(p)[:-3] for p in sources("*.py", "bench/*.py", "runs/*.py")} | {"bench", "runs"}
    for path in sources("nanoreason/*.py", "kernels/*.py"):
        for line in open(path):
            m = re.match(r"\s*(?:from|import)\s+([\w.]+)", line)
            assert not (m and m[1].split(".")[0] in scripts), f"{path}: {line.strip()}"


def test_bench_scripts_do_not_import_each_other_or_the_train_scripts():
    for path in sources("bench/*.py", "runs/*.py"):
        text = open(path).read()
        assert not re.search(r"^\s*(from|import)\s+(bench|runs|train_\w+|eval|sample)\b", text, re.M), path


def test_nothing_edits_sys_path():
    for path in sources("**/*.py", "tutorials/*.ipynb"):
        assert not re.search(r"sys\.path\.(insert|append)\(", open(path).read()), path


def test_old_flag_names_get_one_line_naming_the_new_one():
    from train_ppo import PPOConfig
    from train_sft import SFTConfig
    with pytest.raises(ConfigError, match=r"--sft_ckpt is now --init_from"):
        parse_args(PPOConfig, ["--sft_ckpt=out/sft/ckpt.pt"])
    with pytest.raises(ConfigError, match=r"--max_iters is now --iters"):
        parse_args(SFTConfig, ["--max_iters=5"])
    with pytest.raises(ConfigError, match=r"--ppo_epochs is now --epochs"):
        parse_args(PPOConfig, ["--ppo_epochs=2"])


def test_one_name_per_concept_across_the_stages():
    import train_distill, train_expert_iteration, train_grpo, train_orm, train_ppo, train_prm, train_rcrl, train_sft  # noqa
    configs = [train_sft.SFTConfig, train_ppo.PPOConfig, train_grpo.GRPOConfig, train_expert_iteration.EIConfig,
               train_rcrl.RCRLConfig, train_orm.ORMConfig, train_prm.PRMConfig, train_distill.DistillConfig]
    for cfg in configs:
        names = set(cfg.__dataclass_fields__)
        assert {"out_dir", "init_from"} <= names, cfg
        assert not names & {"sft_ckpt", "student_init", "max_iters", "rounds", "ppo_epochs", "k"}, cfg
    for cfg in (train_sft.SFTConfig, train_ppo.PPOConfig, train_grpo.GRPOConfig, train_expert_iteration.EIConfig,
                train_rcrl.RCRLConfig, train_distill.DistillConfig):
        assert "iters" in cfg.__dataclass_fields__, cfg


def test_run_stage_returns_the_summary_and_names_a_failing_stage(sft_ckpt, tmp_path):
    with pytest.raises(ConfigError, match=r"train_ppo.py failed \(exit 2\): iters, batch_size, epochs and warmup_iters"):
        run_stage(os.path.join(ROOT, "train_ppo.py"), quiet=True, init_from=sft_ckpt, out_dir=tmp_path, iters=0)
    assert not os.path.exists(tmp_path / "summary.json")


def test_make_docs_fills_marked_tables_from_out_and_keeps_missing_ones(tmp_path):
    from runs.make_docs import fill
    (tmp_path / "out" / "b").mkdir(parents=True)
    (tmp_path / "out" / "b" / "table.md").write_text("| a |\n|---|\n| 2 |\n")
    page = ("intro\n<!-- table: out/b/table.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\n"
            "<!-- table: out/missing.md -->\nold\n<!-- /table -->\n")
    new, done = fill(page, str(tmp_path))
    assert "| 2 |" in new and "| 1 |" not in new and "old" in new
    assert done == ["filled out/b/table.md", "kept   out/missing.md (not there)"]


def test_report_card_from_stage_summaries(tmp_path):
    out = tmp_path / "out"
    for name, s in {"sft": {"accuracy_after": 0.5}, "ppo": {"accuracy_before": 0.5, "accuracy_after": 0.75}}.items():
        (out / name).mkdir(parents=True)
        (out / name / "summary.json").write_text(json.dumps(s))
    (out / "speedrun_times.tsv").write_text("sft\t70\nppo\t300\n")
    r = run_entry("runs/report.py", f"--out_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    card = (out / "report.md").read_text()
    assert "50.0% → 75.0% (+25.0 points)" in card and "6 min 10 s" in card and "not run yet: grpo" in card
    assert (out / "report.png").stat().st_size > 0


def test_speedrun_stops_at_the_first_failing_stage_and_skips_finished_ones(tmp_path):
    """A copy of the recipe in a scratch tree whose `python` fails at grpo: sft and ppo were finished earlier."""
    tree = tmp_path / "tree"
    (tree / "runs").mkdir(parents=True)
    for script in ("speedrun.sh", "stage.sh"):
        (tree / "runs" / script).write_text(open(os.path.join(ROOT, "runs", script)).read())
    for name in ("sft", "ppo"):
        (tree / "out" / name).mkdir(parents=True)
        (tree / "out" / name / "summary.json").write_text("{}")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\necho "error: $1: something is wrong" >&2\nexit 2\n')
    (fake / "python").chmod(0o755)
    r = subprocess.run(["bash", "runs/speedrun.sh"], cwd=tree, capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.returncode == 1
    assert "sft: finished earlier" in r.stdout and "ppo: finished earlier" in r.stdout
    assert "error: train_grpo.py: something is wrong" in r.stderr and "stopped at grpo" in r.stderr
    assert (tree / "out" / "sft" / "summary.json").exists()


def test_a_missing_start_is_made_by_its_script_and_a_failing_one_is_named(sft_ckpt, tmp_path, monkeypatch):
    """load_start runs `make_with --out_dir=<the checkpoint's folder>` when the checkpoint is missing (here a stand-in
    for train_sft.py that copies a tiny SFT checkpoint), never under torchrun, and names a maker that fails."""
    from nanoreason.checkpoint import load_start
    maker = tmp_path / "make_start.py"
    maker.write_text("import shutil, sys\nout = sys.argv[1].split('=', 1)[1]\n"
                     f"shutil.copy({sft_ckpt!r}, out + '/ckpt.pt')\n")
    (tmp_path / "start").mkdir()
    policy, tok, task, seed = load_start(str(tmp_path / "start" / "ckpt.pt"), make_with=str(maker))
    assert policy.num_params() > 0 and tok.n_vocab == policy.cfg.vocab_size
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('error: --out_dir: no room', file=sys.stderr)\nsys.exit(2)\n")
    with pytest.raises(ConfigError, match=r"bad.py failed \(exit 2\): --out_dir: no room"):
        load_start(str(tmp_path / "other" / "ckpt.pt"), make_with=str(bad))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun make it first"):
        load_start(str(tmp_path / "third" / "ckpt.pt"), make_with=str(maker))
