"""came_jax installs like a library: the optimizer needs only jax and optax, the rest are extras.

The slow test builds the wheel and sdist from a copy of the checkout (`python -m build`, isolated, as a release
would), checks what the wheel holds, installs it with no extras into a fresh venv and runs one CAME update there.
The fast tests check the one version string, that `import came_jax` loads none of the extras' packages even where
they are installed, and that the `hf` extra admits the transformers that reads what the export writes.
"""

import ast
import email.parser
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import venv
import zipfile

import nbformat
import pytest
from packaging.requirements import Requirement

try:
  import tomllib
except ImportError:  # Python 3.10
  import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Top-level modules of the extras' packages: none may be imported by `import came_jax` or a CAME update.
HEAVY = (
  "flax",
  "orbax",
  "tensorflow_datasets",
  "tensorflow",
  "sentencepiece",
  "ml_collections",
  "tensorboardX",
  "matplotlib",
  "torch",
  "transformers",
  "safetensors",
)

# One update of CAME behind global-norm clipping; prints where came_jax came from and which HEAVY modules got loaded.
SNIPPET = f"""
import json, sys
import came_jax, optax, jax, jax.numpy as jnp

tx = optax.chain(optax.clip_by_global_norm(1.0), came_jax.came(1e-3))
params = {{"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}}
grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
updates, state = tx.update(grads, tx.init(params), params)
new = optax.apply_updates(params, updates)
moved = float(jnp.max(jnp.abs(new["w"] - params["w"])))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"file": came_jax.__file__, "version": came_jax.__version__, "moved": moved, "heavy": heavy}}))
"""


def _pyproject() -> dict:
  return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _version() -> str:
  """`__version__` as written in came_jax/__init__.py: a single literal assignment (setuptools reads it by AST)."""
  tree = ast.parse((ROOT / "came_jax" / "__init__.py").read_text())
  values = [
    node.value
    for node in tree.body
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
  ]
  assert len(values) == 1 and isinstance(values[0], ast.Constant) and isinstance(values[0].value, str), values
  return values[0].value


def _checkout_files() -> list[str]:
  """The checkout's files as a clone would have them: tracked or new, not ignored, present on disk."""
  out = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
    cwd=ROOT,
    capture_output=True,
    check=True,
  ).stdout.decode()
  return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def _run(args, **kwargs) -> subprocess.CompletedProcess:
  result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
  assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
  return result


def _clean_env() -> dict[str, str]:
  """The environment without anything that could put the checkout or another site on a fresh venv's path."""
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
  env["PYTHONNOUSERSITE"] = "1"
  return env


def test_version_is_written_once():
  version = _version()
  assert re.fullmatch(r"\d+\.\d+\.\d+([a-z0-9.+-]*)", version), version
  project = _pyproject()["project"]
  assert "version" not in project and "version" in project["dynamic"]
  assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "came_jax.__version__"}
  assert not (ROOT / "setup.cfg").exists() and not (ROOT / "setup.py").exists()
  # The literal appears in no other source, metadata or documentation file (results data aside).
  pattern = re.compile(rf"(?<![\w.]){re.escape(version)}(?![\w.])")
  suffixes = {".py", ".toml", ".cfg", ".txt", ".md", ".ipynb", ".in", ".json", ".yaml", ".yml"}
  found = [
    f
    for f in _checkout_files()
    if pathlib.Path(f).suffix in suffixes
    and not f.startswith("experiments/results/")
    and pattern.search((ROOT / f).read_text(errors="replace"))
  ]
  assert found == ["came_jax/__init__.py"], found


def test_import_loads_no_extra_even_where_installed():
  """In the test environment every extra is installed: `import came_jax` and an update must still not load them."""
  assert importlib.util.find_spec("flax") and importlib.util.find_spec("torch")  # so the check below means something
  out = _run([sys.executable, "-c", SNIPPET], cwd=ROOT).stdout
  report = _last_json(out)
  assert pathlib.Path(report["file"]).resolve() == ROOT / "came_jax" / "__init__.py"
  assert report["heavy"] == [] and report["moved"] > 0, report


def _last_json(stdout: str) -> dict:
  return json.loads(stdout.strip().splitlines()[-1])


def _dependencies() -> dict[str, Requirement]:
  return {Requirement(r).name: Requirement(r) for r in _pyproject()["project"]["dependencies"]}


def _extra(name: str) -> dict[str, Requirement]:
  return {Requirement(r).name: Requirement(r) for r in _pyproject()["project"]["optional-dependencies"][name]}


def test_dependency_split():
  assert set(_dependencies()) == {"jax", "optax", "numpy"}
  train = _extra("train")
  assert {"flax", "orbax-checkpoint", "tensorflow-datasets", "sentencepiece", "ml-collections"} <= set(train)
  assert not set(train) & {"torch", "transformers", "safetensors", "pytest"}
  hf = _extra("hf")
  assert hf["came_jax"].extras == {"train"} and {"safetensors", "transformers"} <= set(hf)
  test = _extra("test")
  assert test["came_jax"].extras == {"train", "hf"}
  assert str(test["torch"].specifier) == "==2.13.0"  # the local CPU build, never an unpinned (CUDA) torch


def test_hf_extra_admits_the_transformers_that_reads_the_export(tmp_path, shared_data):
  """export.py's tokenizer_config.json names a class of transformers 5 (4.x has no `SentencePieceBackend` and
  fails to load it), so the `hf` extra asks for transformers>=5; the installed one satisfies it and loads it."""
  import transformers

  from came_jax import export
  from came_jax.data import tokenizer as tokenizer_lib

  text = (shared_data / "glue" / "RTE" / "train.tsv").read_text().splitlines()[:1500]
  tokenizer = tokenizer_lib.Tokenizer.train(text, vocab_size=600, max_sentences=1500, num_threads=1)
  export.save_tokenizer(tokenizer, tmp_path, max_len=64)
  cls = json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"]
  assert cls == "SentencePieceBackend"
  spec = _extra("hf")["transformers"].specifier
  assert spec.contains(transformers.__version__) and not spec.contains("4.57.6"), (str(spec), transformers.__version__)
  loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
  assert type(loaded).__name__ == cls
  assert loaded("the cat sat", add_special_tokens=False)["input_ids"] == tokenizer.encode("the cat sat")


def test_wheel_installs_and_runs_with_jax_and_optax_alone(tmp_path):
  src = tmp_path / "src"
  files = _checkout_files()
  for f in files:
    (src / f).parent.mkdir(parents=True, exist_ok=True)
    (src / f).write_bytes((ROOT / f).read_bytes())

  start = time.perf_counter()
  _run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(src)], cwd=tmp_path)
  build_s = time.perf_counter() - start
  version = _version()
  wheel = tmp_path / "dist" / f"came_jax-{version}-py3-none-any.whl"
  sdist = tmp_path / "dist" / f"came_jax-{version}.tar.gz"
  assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in (tmp_path / "dist").iterdir())

  # The wheel: every file of the package (modules, py.typed, came_jax/hf/remote/* read as text), the license,
  # nothing else of the checkout.
  names = zipfile.ZipFile(wheel).namelist()
  dist_info = f"came_jax-{version}.dist-info"
  package = {f for f in files if f.startswith("came_jax/")}
  assert "came_jax/py.typed" in package and "came_jax/__init__.py" in package
  assert {n for n in names if not n.startswith(dist_info + "/")} == package
  assert zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
  assert not [n for n in names if n.split("/")[0] in ("tests", "experiments", "configs", "notebooks")]
  metadata = email.parser.Parser().parsestr(zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode())
  assert metadata["Version"] == version and metadata["License-Expression"] == "Apache-2.0"
  core = {Requirement(r).name for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
  assert core == {"jax", "optax", "numpy"}, core
  assert set(metadata.get_all("Provides-Extra")) == {"train", "hf", "test"}

  # A fresh venv, no extras: pip pulls jax, optax, numpy (and what they need) from the package registry.
  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=True, clear=True)
  python = env_dir / "bin" / "python"
  start = time.perf_counter()
  _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)], cwd=tmp_path, env=_clean_env())
  install_s = time.perf_counter() - start
  installed = _run([str(python), "-m", "pip", "list", "--format=freeze"], cwd=tmp_path, env=_clean_env()).stdout
  installed = {line.split("==")[0].lower().replace("_", "-") for line in installed.split()}
  assert {"came-jax", "jax", "jaxlib", "optax", "numpy"} <= installed, installed
  extras = {"flax", "orbax-checkpoint", "tensorflow-datasets", "sentencepiece", "ml-collections", "tensorboardx"}
  assert not installed & (extras | {"torch", "transformers", "safetensors", "matplotlib"}), installed

  report = _last_json(_run([str(python), "-c", SNIPPET], cwd=tmp_path, env=_clean_env()).stdout)
  assert pathlib.Path(report["file"]).is_relative_to(env_dir), report  # the wheel's copy, not the checkout
  assert report["version"] == version and report["moved"] > 0 and report["heavy"] == [], report
  print(f"build {build_s:.0f} s, pip install (no extras) into a fresh venv {install_s:.0f} s")


@pytest.mark.parametrize("name", ["came_quickstart", "cramming_bert"])
def test_notebook_installs_the_checkout_with_the_train_extra(name):
  setup = next(
    c for c in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"
  )
  assert "git clone -q https://github.com/came-jax/came_jax /content/came_jax" in setup.source
  assert re.search(r'%pip install -q (-e )?"/content/came_jax\[train\]"', setup.source), setup.source
