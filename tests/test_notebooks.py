"""Every notebook in tutorials/ is executed at tiny settings, so none can rot."""
import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "*.ipynb")))


def test_there_are_tutorials():
    assert NOTEBOOKS


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    """One folder for every notebook's outputs: their tiny SFT start (`tiny_sft`, the same settings in each) is
    trained once and reused (run_stage(..., reuse=True)); everything else has a folder per notebook."""
    return tmp_path_factory.mktemp("tutorials")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch, out_dir):
    """Executed in memory at tiny settings, writing under out_dir: the committed notebook and its outputs stay."""
    monkeypatch.setenv("NANOREASON_TINY", "1")
    monkeypatch.setenv("NANOREASON_OUT", str(out_dir))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
