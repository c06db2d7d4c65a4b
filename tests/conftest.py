import os

# Before anything imports triton or datasets: Triton kernels run on the CPU interpreter; datasets never calls a hub.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import contextlib
import io
import runpy
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(2)


@pytest.fixture
def tiny_model():
    from nanoreason.model import GPT, GPTConfig
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


TINY_SFT = ["--min_steps=1", "--max_steps=1", "--ops=+-", "--vocab_size=300", "--n_layer=1", "--n_head=2",
            "--n_embd=32", "--block_size=96", "--eval_problems=16", "--max_new_tokens=24", "--iters=4",
            "--eval_interval=4"]


@pytest.fixture(scope="session")
def sft_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("sft")
    r = subprocess.run([sys.executable, "train_sft.py", f"--out_dir={d}", *TINY_SFT], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return str(d / "ckpt.pt")


def run_entry(script, *args, stdin="") -> subprocess.CompletedProcess:
    """`python <script> <args>` through the script's own `__main__` block, in this process (a subprocess per case
    would pay the import of torch every time), with its exit code, stdout and stderr. An exception that escapes the
    script, which a user would see as a traceback, comes back as the exit code 'traceback: <type>: <message>'."""
    argv, stdin_was, out, err = sys.argv, sys.stdin, io.StringIO(), io.StringIO()
    sys.argv, sys.stdin = [script, *args], io.StringIO(stdin)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: B036 (what a user would see as a traceback)
        code = f"traceback: {e.__class__.__name__}: {e}"
    finally:
        sys.argv, sys.stdin = argv, stdin_was
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def entry():
    return run_entry
