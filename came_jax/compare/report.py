"""The pretraining comparison's results: markdown tables and the files of its results folder.

runs.csv        one row per run: phase, batch, optimizer, rate, seed, held-out and train metrics, times
curves.csv      every logged point of every run (train and held-out rows), long format
summary.json    chosen rates, per-optimizer means/std/min/max over seeds, the context-free reference loss,
                memory, wall time, config
results.md      the markdown tables (pasted into experiments/README.md)
*.png           the figures of `came_jax.compare.plots`
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Any, Optional

RUN_FIELDS = (
  "phase",
  "batch_size",
  "optimizer",
  "learning_rate",
  "seed",
  "steps",
  "tokens_seen",
  "diverged",
  "heldout_loss",
  "heldout_accuracy",
  "heldout_perplexity",
  "final_train_loss",
  "final_train_accuracy",
  "train_s",
  "wall_s",
  "tokens_per_sec",
)
CURVE_FIELDS = (
  "phase",
  "batch_size",
  "optimizer",
  "learning_rate",
  "seed",
  "split",
  "step",
  "tokens_seen",
  "elapsed_s",
  "loss",
  "accuracy",
  "perplexity",
  "lr_now",
  "grad_norm",
)
RUN_KEYS = ("phase", "batch_size", "optimizer", "learning_rate", "seed")  # what names a run in curves.csv
EDGE_ARROW = {"lowest": "↓", "highest": "↑"}  # a rate kept at that end of its grid


def fmt(x: Optional[float], spec: str = ".4f") -> str:
  """`x` formatted, or an en dash for a missing value.

  >>> fmt(1.23456), fmt(None)
  ('1.2346', '–')
  """
  return "–" if x is None else format(x, spec)


def stat(agg: dict[str, Any], key: str, spec: str = ".4f", band: bool = False) -> str:
  """`mean ± std` of `agg[key]` (a `runs.aggregate` entry), with `[min, max]` when `band`; the value for one seed.

  >>> agg = {"loss": {"mean": 2.0, "std": 0.5, "min": 1.5, "max": 2.5, "n": 2}}
  >>> stat(agg, "loss", ".2f", band=True), stat(agg, "accuracy")
  ('2.00 ± 0.50 [1.50, 2.50]', '–')
  """
  s = agg.get(key)
  if s is None:
    return "–"
  if s["n"] == 1:
    return format(s["mean"], spec)
  text = f"{format(s['mean'], spec)} ± {format(s['std'], spec)}"
  return text + (f" [{format(s['min'], spec)}, {format(s['max'], spec)}]" if band else "")


def _main_table(summary: dict[str, Any]) -> list[str]:
  """Per batch size and optimizer: the kept rate, tokens, held-out loss (and the paired difference), the
  objective's metrics, tokens/s."""
  objective = summary["objective"]
  base = summary["config"]["optimizers"][0]
  cols = ["batch", "optimizer", "lr (swept)", "tokens", "held-out loss", f"minus {base}'s, same seed"]
  if objective == "mlm":
    cols += ["held-out MLM acc.", "train MLM loss", "train MLM acc."]
  elif objective == "causal":
    cols += ["held-out perplexity", "train loss"]
  else:
    cols += ["train span loss"]
  cols += ["tokens/s"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * 2 + "---:|" * (len(cols) - 2)]
  for r in summary["results"].values():
    lr = f"{r['learning_rate']:g}" + (f" (grid {r['at_grid_edge']})" if r["at_grid_edge"] else "")
    d = r.get("paired_delta")
    row = [
      str(r["batch_size"]),
      r["optimizer"],
      lr,
      f"{r['tokens_seen'] / 1e6:.2f}M",
      stat(r, "heldout_loss", band=True),
      f"{d['mean']:+.4f} [{d['min']:+.4f}, {d['max']:+.4f}]" if d else "–",
    ]
    if objective == "mlm":
      row += [stat(r, "heldout_accuracy", ".4f"), stat(r, "final_train_loss"), stat(r, "final_train_accuracy")]
    elif objective == "causal":
      row += [stat(r, "heldout_perplexity", ".1f"), stat(r, "final_train_loss")]
    else:
      row += [stat(r, "final_train_loss")]
    tps = r.get("tokens_per_sec")
    row += [f"{tps['mean'] / 1e3:.1f}k" if tps else "–"]
    if r["diverged"]:
      row[4] += f" ({r['diverged']} diverged)"
    lines.append("| " + " | ".join(row) + " |")
  return lines


def _sweep_table(summary: dict[str, Any], sweep: list[dict[str, Any]]) -> list[str]:
  """Held-out loss of every sweep run, one column per rate; the kept rate in bold."""
  lines = [
    f"Learning-rate sweep: held-out loss after {summary['sweep_steps']} steps "
    "(seed " + str(summary["config"]["sweep"]["seed"]) + "); **bold**: kept.",
    "",
  ]
  grid = sorted({r["learning_rate"] for r in sweep})
  lines += ["| batch | optimizer | " + " | ".join(f"{lr:g}" for lr in grid) + " |", "|---|---|" + "---:|" * len(grid)]
  for r in summary["results"].values():
    cells = []
    for lr in grid:
      hit = [
        s
        for s in sweep
        if s["batch_size"] == r["batch_size"] and s["optimizer"] == r["optimizer"] and s["learning_rate"] == lr
      ]
      if not hit:
        cells.append("")
        continue
      v = "diverged" if hit[0]["diverged"] else f"{hit[0]['heldout_loss']:.4f}"
      cells.append(f"**{v}**" if lr == r["learning_rate"] else v)
    lines.append(f"| {r['batch_size']} | {r['optimizer']} | " + " | ".join(cells) + " |")
  return lines


def _batch_table(summary: dict[str, Any]) -> list[str]:
  """Held-out loss (mean over seeds) per optimizer at each batch size, and its change from the first."""
  batches = summary["batch_sizes"]
  b0 = batches[0]
  lines = [
    f"Batch size at equal steps ({summary['steps']}): held-out loss (mean over seeds) and its change from batch {b0}.",
    "",
  ]
  lines += [
    "| optimizer | "
    + " | ".join(f"batch {b}" for b in batches)
    + " | "
    + " | ".join(f"change at {b}" for b in batches[1:])
    + " |",
    "|---|" + "---:|" * (2 * len(batches) - 1),
  ]
  for opt in summary["config"]["optimizers"]:
    vals = [summary["results"][f"{b}/{opt}"].get("heldout_loss", {}).get("mean") for b in batches]
    deltas = [None if v is None or vals[0] is None else v - vals[0] for v in vals[1:]]
    lines.append(
      f"| {opt} | "
      + " | ".join(fmt(v) for v in vals)
      + " | "
      + " | ".join("–" if d is None else f"{d:+.4f}" for d in deltas)
      + " |"
    )
  return lines


def _memory_tables(mem: dict[str, Any]) -> list[str]:
  """Optimizer state in multiples of the fp32 parameter bytes: the compared model, then the reference model."""
  lines = [
    f"Optimizer state (`eval_shape`): {mem['model']} with the optimizers as compared, and "
    f"{mem['reference_model']} (experiments/memory_table.py), in multiples of the fp32 parameter bytes.",
    "",
  ]
  lines += ["| model | " + " | ".join(mem["state_bytes"]) + " |", "|---|" + "---:|" * len(mem["state_bytes"])]
  lines.append(
    f"| {mem['model']} ({mem['param_bytes'] / 4e6:.2f}M params) | "
    + " | ".join(f"{v / mem['param_bytes']:.3f}×" for v in mem["state_bytes"].values())
    + " |"
  )
  ref = mem["reference_state_bytes"]
  lines += ["", "| model | " + " | ".join(ref) + " |", "|---|" + "---:|" * len(ref)]
  lines.append(
    f"| {mem['reference_model']} ({mem['reference_param_bytes'] / 4e6:.1f}M params) | "
    + " | ".join(f"{v / mem['reference_param_bytes']:.3f}×" for v in ref.values())
    + " |"
  )
  return lines


def results_markdown(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
  """The results tables: main (per batch size), the sweep, the large-batch comparison, memory, wall time."""
  n = len(summary["seeds"])
  lines = [
    f"Model {summary['model']} ({summary['objective']}, sequence {summary['seq_len']}), {summary['steps']} "
    f"steps, seeds {summary['seeds']} (mean ± std over {n} seeds, [min, max] of the held-out loss; the paired "
    "difference is mean [min, max] over seeds), device " + summary["device"] + ".",
    "",
  ]
  lines += _main_table(summary)
  if summary.get("reference_loss") is not None:
    lines += [
      "",
      f"Context-free reference: held-out loss {summary['reference_loss']:.4f} for the training stream's "
      "target frequencies, whatever the input (a run near it has learnt only which tokens are common).",
    ]
  sweep = [r for r in records if r["phase"] == "sweep"]
  if sweep:
    lines += [""] + _sweep_table(summary, sweep)
  if len(summary["batch_sizes"]) > 1:
    lines += [""] + _batch_table(summary)
  lines += [""] + _memory_tables(summary["memory"])
  lines += [
    "",
    f"Wall time: {summary['wall_s'] / 60:.1f} min for this invocation; the {len(records)} runs took "
    f"{summary['run_wall_s'] / 60:.1f} min in all (sweep and full runs, compilation and evaluation "
    "included).",
  ]
  return "\n".join(lines) + "\n"


def _round(v: Any) -> Any:
  """Floats to 6 significant digits (curves.csv).

  >>> _round(0.123456789), _round(3)
  (0.123457, 3)
  """
  return float(f"{v:.6g}") if isinstance(v, float) else v


def write_outputs(summary: dict[str, Any], records: list[dict[str, Any]], out: pathlib.Path) -> None:
  """runs.csv, curves.csv, summary.json, results.md and the plots, in `out`."""
  from came_jax.compare import plots  # pylint: disable=g-import-not-at-top  (matplotlib only here)

  with open(out / "runs.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=RUN_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
      w.writerow(r)
  with open(out / "curves.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
      for row in r["curves"]:
        w.writerow({**{k: r[k] for k in RUN_KEYS}, **{k: _round(v) for k, v in row.items()}})
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  (out / "results.md").write_text(results_markdown(summary, records))
  plots.plot_all(summary, records, out)
