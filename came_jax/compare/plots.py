"""The pretraining comparison's figures: curves with a seed band, the sweep, memory, batch sizes.

Every function takes the comparison's records (one per run, with their `curves` rows) or its summary and writes one
PNG. Curves are drawn for the full runs: the line is the mean over seeds, the band spans their min and max.
matplotlib (its Agg backend) is imported when a figure is drawn, not with this module.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import numpy as np

COLORS = {"came": "tab:red", "came_bc": "tab:orange", "adamw": "tab:blue", "adafactor": "tab:green"}
LABELS = {"came": "CAME", "came_bc": "CAME (bias-corrected)", "adamw": "AdamW", "adafactor": "Adafactor"}
SMOOTH = 5  # training losses: trailing mean over this many logged points


def _pyplot():
  """matplotlib.pyplot on the Agg backend (files only)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _color(opt: str) -> str:
  return COLORS.get(opt, "tab:gray")


def _label(opt: str) -> str:
  return LABELS.get(opt, opt)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
  """Trailing mean over (up to) `n` points.

  >>> _smooth(np.array([1.0, 3.0, 5.0]), 2).tolist()
  [1.0, 2.0, 4.0]
  """
  c = np.cumsum(np.insert(y, 0, 0.0))
  out = np.empty_like(y)
  for i in range(len(y)):
    lo = max(0, i + 1 - n)
    out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
  return out


def seed_band(
  runs: list[dict[str, Any]], split: str, key: str, x: str = "step", smooth: int = 1
) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
  """(x, mean, min, max) over seeds of `key` at the steps every run logged; x = mean of `x` over seeds.

  None when the runs share no logged step.

  >>> run = lambda losses: {"curves": [{"split": "train", "step": s, "loss": v} for s, v in zip((10, 20), losses)]}
  >>> [a.tolist() for a in seed_band([run((3.0, 2.0)), run((5.0, 4.0))], "train", "loss")]
  [[10.0, 20.0], [4.0, 3.0], [3.0, 2.0], [5.0, 4.0]]
  """
  per_run = []
  for r in runs:
    rows = [row for row in r["curves"] if row["split"] == split and row.get(key) is not None]
    per_run.append({row["step"]: row for row in rows})
  steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
  if not steps:
    return None
  ys = np.array([[p[s][key] for s in steps] for p in per_run], dtype=float)
  if smooth > 1:
    ys = np.stack([_smooth(y, smooth) for y in ys])
  xs = np.array([[p[s][x] if x != "step" else s for s in steps] for p in per_run], dtype=float).mean(0)
  return xs, ys.mean(0), ys.min(0), ys.max(0)


def _panels(objective: str) -> list[tuple[str, str, str, int]]:
  """(split, key, title, smoothing) for each column of the curve figures."""
  cols = [("train", "loss", "train loss", SMOOTH), ("heldout", "loss", "held-out loss", 1)]
  if objective == "mlm":
    cols.append(("heldout", "accuracy", "held-out MLM accuracy", 1))
  elif objective == "causal":
    cols.append(("heldout", "perplexity", "held-out perplexity", 1))
  return cols


def _save_curves(fig, summary: dict[str, Any], path: pathlib.Path) -> None:
  """Titles, lays out, writes and closes a curve figure."""
  plt = _pyplot()
  fig.suptitle(
    f"{summary['name']}: {summary['model']}, {len(summary['seeds'])} seeds (line: mean, band: min-max)", fontsize=10
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_bands(ax, summary, records, batch_size: int, split: str, key: str, x: str = "step", smooth: int = 1):
  """Each optimizer's full runs at `batch_size`: the mean over seeds of `key` and its min-max band."""
  for opt in summary["config"]["optimizers"]:
    runs = [r for r in records if r["phase"] == "full" and r["batch_size"] == batch_size and r["optimizer"] == opt]
    band = seed_band(runs, split, key, x=x, smooth=smooth)
    if band is None:
      continue
    xs, mean, lo, hi = band
    lr = summary["results"][f"{batch_size}/{opt}"]["learning_rate"]
    ax.plot(xs, mean, color=_color(opt), label=f"{_label(opt)} (lr {lr:g})")
    ax.fill_between(xs, lo, hi, color=_color(opt), alpha=0.2, linewidth=0)


def plot_curves(summary: dict[str, Any], records: list[dict[str, Any]], path: pathlib.Path, x: str = "step"):
  """One row per batch size; columns: train loss, held-out loss, (MLM accuracy | perplexity)."""
  plt = _pyplot()
  batches = summary["batch_sizes"]
  cols = _panels(summary["objective"])
  fig, axes = plt.subplots(len(batches), len(cols), figsize=(4.6 * len(cols), 3.6 * len(batches)), squeeze=False)
  for i, b in enumerate(batches):
    for j, (split, key, title, smooth) in enumerate(cols):
      ax = axes[i][j]
      _plot_bands(ax, summary, records, b, split, key, x=x, smooth=smooth)
      ax.set_title(f"{title}, batch {b}" + (f" (mean of {smooth} logs)" if smooth > 1 else ""), fontsize=9)
      ax.set_xlabel("step" if x == "step" else "training time (s, mean over seeds)")
      if key == "loss":
        _zoom(ax)
      ref = summary.get("reference_loss")
      if split == "heldout" and key == "loss" and ref is not None and ref < ax.get_ylim()[1]:
        ax.axhline(ref, color="gray", linestyle="--", linewidth=1, label="context-free reference")
        ax.legend(fontsize=8)
      ax.grid(alpha=0.3)
      if j == 0:
        ax.legend(fontsize=8)
  _save_curves(fig, summary, path)


def plot_log_steps(summary: dict[str, Any], records: list[dict[str, Any]], path: pathlib.Path):
  """Train and held-out loss against the step on a log axis (a crossing early or late shows), per batch size."""
  plt = _pyplot()
  batches = summary["batch_sizes"]
  cols = [("train", "training loss", SMOOTH), ("heldout", "held-out loss", 1)]
  fig, axes = plt.subplots(len(batches), 2, figsize=(10, 3.8 * len(batches)), squeeze=False)
  for i, b in enumerate(batches):
    for j, (split, title, smooth) in enumerate(cols):
      ax = axes[i][j]
      _plot_bands(ax, summary, records, b, split, "loss", smooth=smooth)
      ref = summary.get("reference_loss")
      if ref is not None:
        ax.axhline(ref, color="gray", linestyle="--", linewidth=1, label="context-free reference")
      ax.set_xscale("log")
      ax.set_xlabel("step (log scale)")
      ax.set_title(f"{title}, batch {b}" + (f" (mean of {smooth} logs)" if smooth > 1 else ""), fontsize=9)
      ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines() if len(ln.get_ydata()) > 2] or [np.zeros(1)])
      if ys.size > 1 and np.all(np.isfinite(ys)):  # from the lowest loss to 1 nat above the reference
        top = min(float(ys.max()), (ref if ref is not None else float(ys.max())) + 1.0)
        ax.set_ylim(float(ys.min()) - 0.05, top + 0.05)
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=8)
  _save_curves(fig, summary, path)


def _zoom(ax) -> None:
  """Clip the y-range to the last 80% of the curves so the differences are visible."""
  ys = np.concatenate([ln.get_ydata()[len(ln.get_ydata()) // 5 :] for ln in ax.get_lines()] or [np.zeros(1)])
  if ys.size and np.all(np.isfinite(ys)):
    lo, hi = float(ys.min()), float(ys.max())
    pad = 0.05 * (hi - lo + 1e-6)
    ax.set_ylim(lo - pad, hi + 3 * pad)


def plot_sweep(summary: dict[str, Any], records: list[dict[str, Any]], path: pathlib.Path):
  """Held-out loss against the rate of every sweep run, per batch size (star: the kept rate)."""
  plt = _pyplot()
  batches, opts = summary["batch_sizes"], summary["config"]["optimizers"]
  fig, axes = plt.subplots(1, len(batches), figsize=(4.8 * len(batches), 3.6), squeeze=False)
  for ax, b in zip(axes[0], batches):
    for opt in opts:
      sweep = sorted(
        (r for r in records if r["phase"] == "sweep" and r["batch_size"] == b and r["optimizer"] == opt),
        key=lambda r: r["learning_rate"],
      )
      if not sweep:
        continue
      lrs = [r["learning_rate"] for r in sweep]
      ys = [np.nan if r["diverged"] else r["heldout_loss"] for r in sweep]
      ax.plot(lrs, ys, "o-", color=_color(opt), label=_label(opt))
      best = summary["results"][f"{b}/{opt}"]
      if best["sweep_heldout_loss"] is not None:
        ax.plot([best["learning_rate"]], [best["sweep_heldout_loss"]], "*", color=_color(opt), markersize=14)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"held-out loss after {summary['sweep_steps']} steps")
    ax.set_title(f"learning-rate sweep, batch {b} (star: kept)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_memory(summary: dict[str, Any], path: pathlib.Path):
  """Left: the compared model's optimizer state; right: params + grads + state of the reference model."""
  plt = _pyplot()
  mem = summary["memory"]
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  names = list(mem["state_bytes"])
  vals = [mem["state_bytes"][n] / mem["param_bytes"] for n in names]
  bars = axes[0].bar([_label(n) for n in names], vals, color=[_color(n) for n in names])
  axes[0].bar_label(bars, fmt="%.3f×", fontsize=8)
  axes[0].set_ylabel("optimizer state / fp32 param bytes")
  axes[0].set_title(f"{mem['model']} as compared ({mem['param_bytes'] / 4e6:.2f}M params)", fontsize=9)
  ref = mem["reference_state_bytes"]
  gib = 2**30
  names = list(ref)
  totals = [(2 * mem["reference_param_bytes"] + ref[n]) / gib for n in names]
  colors = [
    "tab:red"
    if n.startswith("CAME")
    else "tab:blue"
    if n == "Adam"
    else "tab:green"
    if n.startswith("Adafactor")
    else "tab:gray"
    for n in names
  ]
  bars = axes[1].bar(names, totals, color=colors)
  axes[1].bar_label(bars, fmt="%.2f", fontsize=8)
  axes[1].set_ylabel("params + grads + state (GiB, fp32)")
  axes[1].set_title(f"{mem['reference_model']} (experiments/memory_table.py)", fontsize=9)
  axes[1].tick_params(axis="x", labelrotation=30, labelsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_batch_sizes(summary: dict[str, Any], path: pathlib.Path):
  """Final held-out loss per optimizer at each batch size (bars: mean over seeds, whiskers: min-max)."""
  plt = _pyplot()
  batches, opts = summary["batch_sizes"], summary["config"]["optimizers"]
  fig, ax = plt.subplots(figsize=(6, 3.8))
  width = 0.8 / len(batches)
  shades = np.linspace(0.45, 1.0, len(batches))
  for k, b in enumerate(batches):
    for i, opt in enumerate(opts):
      s = summary["results"][f"{b}/{opt}"].get("heldout_loss")
      if s is None:
        continue
      xpos = i + (k - (len(batches) - 1) / 2) * width
      ax.bar(
        xpos,
        s["mean"],
        width,
        color=_color(opt),
        alpha=shades[k],
        yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
        capsize=3,
        label=f"batch {b}" if i == 0 else None,
      )
      ax.text(xpos, s["max"], f"{s['mean']:.3f}", ha="center", va="bottom", fontsize=7)
  ax.set_xticks(range(len(opts)), [_label(o) for o in opts])
  lo = min(
    summary["results"][f"{b}/{o}"]["heldout_loss"]["min"]
    for b in batches
    for o in opts
    if summary["results"][f"{b}/{o}"].get("heldout_loss")
  )
  hi = max(
    summary["results"][f"{b}/{o}"]["heldout_loss"]["max"]
    for b in batches
    for o in opts
    if summary["results"][f"{b}/{o}"].get("heldout_loss")
  )
  ax.set_ylim(lo - 0.3 * (hi - lo + 1e-3), hi + 0.3 * (hi - lo + 1e-3))
  ax.set_ylabel("final held-out loss")
  ax.set_title(
    f"same {summary['steps']} steps, batch " + " vs ".join(map(str, batches)) + " (light to dark)", fontsize=9
  )
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_all(summary: dict[str, Any], records: list[dict[str, Any]], out: pathlib.Path) -> list[pathlib.Path]:
  """Every figure of the comparison in `out`; returns their paths."""
  paths = [out / "curves_step.png", out / "curves_time.png", out / "curves_log_step.png", out / "memory.png"]
  plot_curves(summary, records, paths[0], x="step")
  plot_curves(summary, records, paths[1], x="elapsed_s")
  plot_log_steps(summary, records, paths[2])
  plot_memory(summary, paths[3])
  if any(r["phase"] == "sweep" for r in records):
    paths.append(out / "sweep.png")
    plot_sweep(summary, records, paths[-1])
  if len(summary["batch_sizes"]) > 1:
    paths.append(out / "batch_sizes.png")
    plot_batch_sizes(summary, paths[-1])
  return paths
