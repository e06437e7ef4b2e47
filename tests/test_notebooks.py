"""The notebooks run top to bottom with nbclient at their tiny setting, so they cannot rot.

Each notebook reads `CAME_JAX_NOTEBOOK_TINY=1` in its `parameters` cell; the cramming notebook also writes its runs
under `CAME_JAX_NOTEBOOK_WORKDIR` and reads the sample data from `CAME_JAX_DATA` (default ../shared/data). The
kernel starts in notebooks/, as when a user opens the file there.
"""

import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

# What a tiny run must print, besides producing plots without errors.
EXPECTED_OUTPUT = {
  "came_quickstart": ["state", "best rates:", "held-out loss"],
  "cramming_bert": ["steps,", "held-out MLM loss", "| Model |", "crammed:", "random init:"],
}


def _text_outputs(nb) -> str:
  parts = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.output_type == "stream":
        parts.append(out.text)
      elif "data" in out and "text/plain" in out["data"]:
        parts.append(out["data"]["text/plain"])
  return "\n".join(parts)


def _images(nb) -> int:
  return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("name", ["came_quickstart", "cramming_bert"])
def test_notebook_is_colab_ready(name):
  """The committed file: a guarded Colab install first, a `parameters` cell, no stored outputs or errors."""
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert '"google.colab" in sys.modules' in code[0].source
  assert "pip install" in code[0].source and "github.com/came-jax/came_jax" in code[0].source
  params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1 and "CAME_JAX_NOTEBOOK_TINY" in params[0].source
  assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
  assert "colab.research.google.com/github/came-jax/came_jax/blob/main/notebooks" in nb.cells[0].source


@pytest.mark.parametrize("name", ["came_quickstart", "cramming_bert"])
def test_notebook_runs_at_tiny_setting(name, tmp_path, monkeypatch, shared_data):
  monkeypatch.setenv("CAME_JAX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("CAME_JAX_NOTEBOOK_WORKDIR", str(tmp_path / "work"))
  monkeypatch.setenv("CAME_JAX_DATA", str(shared_data))
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  start = time.perf_counter()
  NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
  print(f"{name}: {time.perf_counter() - start:.0f} s")  # budget: < 90 s on a 2-core CPU
  text = _text_outputs(nb)
  for expected in EXPECTED_OUTPUT[name]:
    assert expected in text, (expected, text[-2000:])
  assert _images(nb) >= 2
  assert not any(out.output_type == "error" for c in nb.cells for out in c.get("outputs", []))
  if name == "cramming_bert":
    work = tmp_path / "work"
    assert (work / "pretrain" / "summary.json").is_file()
    assert (work / "glue_crammed" / "results.json").is_file()
    assert (work / "glue_random_init" / "results.json").is_file()
