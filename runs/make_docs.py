"""Regenerate the figures in README.md and docs/ from what the bench scripts and the speedrun wrote under out/.

    python runs/make_docs.py             # after bash runs/speedrun.sh, or any python bench/<name>.py

Between the markers

    <!-- table: out/compare_default/table.md -->
    ...
    <!-- /table -->

a page holds a copy of that file; this command replaces the copy with the file as it is now (a missing file leaves
the copy as it was, and says so). The README's pictures are copied to docs/img/. No figure is copied by hand.
"""
import glob
import os
import re
import shutil
from dataclasses import dataclass

from nanoreason.config import parse_args, run_main

MARKED = re.compile(r"(<!-- table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
IMAGES = {"out/ppo/ppo.png": "docs/img/ppo.png", "out/report.png": "docs/img/report.png",
          "out/zero/zero.png": "docs/img/zero.png", "out/base/base.png": "docs/img/base.png",
          "out/zero_passk/passk.png": "docs/img/zero_passk.png", "out/eval/sft_k64.png": "docs/img/tts_seed0.png",
          "out/compare/compare.png": "docs/img/compare.png"}


@dataclass
class DocsConfig:
    root: str = "."                      # the repository root


def fill(page: str, root: str) -> tuple[str, list[str]]:
    """`page` with every marked copy replaced by its file's current text; and what was done, one line per marker."""
    done = []

    def replace(m):
        path = os.path.join(root, m["path"])
        if not os.path.isfile(path):
            done.append(f"kept   {m['path']} (not there)")
            return m.group(0)
        done.append(f"filled {m['path']}")
        return m.group(1) + open(path).read().rstrip("\n") + "\n" + m.group(4)

    return MARKED.sub(replace, page), done


def main(c: DocsConfig):
    for page in [os.path.join(c.root, "README.md"), *sorted(glob.glob(os.path.join(c.root, "docs", "*.md")))]:
        text = open(page).read()
        new, done = fill(text, c.root)
        for line in done:
            print(f"{os.path.relpath(page, c.root)}: {line}")
        if new != text:
            open(page, "w").write(new)
    for src, dst in IMAGES.items():
        if os.path.isfile(os.path.join(c.root, src)):
            os.makedirs(os.path.dirname(os.path.join(c.root, dst)), exist_ok=True)
            shutil.copyfile(os.path.join(c.root, src), os.path.join(c.root, dst))
            print(f"copied {src} -> {dst}")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(DocsConfig)))
