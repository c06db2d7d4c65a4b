"""Execute every tutorial at its normal settings and commit-ready: outputs (numbers and figures) saved into the
notebook, and its run time on this machine written at its top.

    python runs/tutorials.py                       # all of tutorials/*.ipynb, in order (after bash runs/speedrun.sh:
                                                   # 02, 04-07 start from out/sft/ and out/ppo/, made first if missing)
    python runs/tutorials.py --only=03             # one notebook

The test suite runs the same notebooks at tiny settings (NANOREASON_TINY=1) without writing to them.
"""
import glob
import os
import re
import time
import uuid
from dataclasses import dataclass

import nbformat
from nbclient import NotebookClient

from nanoreason.config import ConfigError, parse_args, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAMP = re.compile(r"\n\*Run time on a 2-core CPU: [^*]*\*\n?")


@dataclass
class TutorialsConfig:
    only: str = ""                      # comma-separated notebook prefixes, e.g. 01,03; "" = all
    timeout: int = 1800                 # seconds per cell


def run(path: str, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:                               # cells added by hand may lack the id nbformat 4.5 wants
        cell.setdefault("id", uuid.uuid4().hex[:8])
    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    seconds = time.time() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise ConfigError(f"{path}: a cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    first = nb.cells[0]
    stamp = (f"\n*Run time on a 2-core CPU: {int(seconds // 60)} min {int(seconds % 60):02d} s at these settings, from "
             f"`python runs/tutorials.py` (it reuses what earlier runs left in `out/`).*\n")
    first.source = STAMP.sub("", first.source).rstrip("\n") + "\n" + stamp
    nbformat.write(nb, path)
    return seconds


def main(c: TutorialsConfig):
    paths = sorted(glob.glob(os.path.join(ROOT, "tutorials", "*.ipynb")))
    wanted = [p.strip() for p in c.only.split(",") if p.strip()]
    if wanted:
        paths = [p for p in paths if any(os.path.basename(p).startswith(w) for w in wanted)]
        if not paths:
            raise ConfigError(f"--only={c.only}: no notebook in tutorials/ starts with that")
    for p in paths:
        print(f"{os.path.basename(p)}: running ...", flush=True)
        print(f"{os.path.basename(p)}: {run(p, c.timeout):.0f} s, outputs saved")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(TutorialsConfig)))
