"""GLUE metrics in numpy: accuracy, binary F1, Matthews correlation, Pearson and Spearman correlation.

No scikit-learn or scipy at runtime; the tests check every function against them on the same random predictions.
Degenerate inputs follow those libraries: F1 is 0 when there are no positive predictions or labels, Matthews
correlation is 0 when a confusion-matrix margin is constant, and a correlation with a constant input is NaN.

>>> from came_jax.glue import metrics
>>> predictions, labels = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
>>> {k: round(v, 4) for k, v in metrics.compute(("accuracy", "f1", "matthews_corr"), predictions, labels).items()}
{'accuracy': 0.6, 'f1': 0.6667, 'matthews_corr': 0.1667}

References:
  Wang et al., `GLUE: A multi-task benchmark and analysis platform for natural language understanding
  <https://arxiv.org/abs/1804.07461>`_, 2019 (metric per task).
  Matthews, `Comparison of the predicted and observed secondary structure of T4 phage lysozyme
  <https://doi.org/10.1016/0005-2795(75)90109-9>`_, 1975; Gorodkin (2004) for the multi-class form.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of ``predictions`` equal to ``labels``.

  >>> accuracy([1, 0, 1, 1], [1, 0, 0, 1])
  0.75
  """
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  return float(np.mean(predictions == labels)) if labels.size else float("nan")


def f1(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
  """Binary F1 of class ``positive``: ``2 tp / (2 tp + fp + fn)``; 0 when that denominator is 0.

  >>> f1([1, 0, 1, 1], [1, 0, 0, 1]), f1([0, 0], [0, 0])  # tp = 2, fp = 1, fn = 0; no positives at all
  (0.8, 0.0)
  """
  p, y = np.asarray(predictions) == positive, np.asarray(labels) == positive
  tp, fp, fn = np.sum(p & y), np.sum(p & ~y), np.sum(~p & y)
  denom = 2 * tp + fp + fn
  return float(2 * tp / denom) if denom else 0.0


def matthews_corr(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Matthews correlation coefficient (multi-class form, equal to the binary ``(tp tn - fp fn) / sqrt(...)``).

  With the confusion matrix ``C``, ``t = C.sum(1)`` (true counts), ``p = C.sum(0)`` (predicted), ``c = trace(C)``
  and ``s = C.sum()``: ``(c s - t.p) / sqrt((s^2 - p.p) (s^2 - t.t))``; 0 when the denominator is 0.

  >>> round(matthews_corr([1, 0, 1, 1, 0], [1, 0, 0, 1, 1]), 4), matthews_corr([0, 0, 0], [0, 1, 1])
  (0.1667, 0.0)
  """
  predictions, labels = np.asarray(predictions).ravel(), np.asarray(labels).ravel()
  classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  y, p = encoded[: labels.size], encoded[labels.size :]
  k = len(classes)
  confusion = np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(np.float64)
  t, q = confusion.sum(1), confusion.sum(0)
  c, s = np.trace(confusion), confusion.sum()
  denom = np.sqrt((s * s - q @ q) * (s * s - t @ t))
  return float((c * s - t @ q) / denom) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation (float64); NaN when either input is constant.

  >>> round(pearson([1, 2, 3, 4], [1, 4, 9, 16]), 4), pearson([1, 1, 1], [1, 2, 3])
  (0.9844, nan)
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  xc, yc = x - x.mean(), y - y.mean()
  denom = np.sqrt((xc @ xc) * (yc @ yc))
  if not denom:
    return float("nan")
  return float(np.clip((xc @ yc) / denom, -1.0, 1.0))


def rank_average(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n of ``x``; tied values share the mean of their ranks (``scipy.stats.rankdata(method="average")``).

  >>> rank_average([10, 20, 20, 5]).tolist()
  [2.0, 3.5, 3.5, 1.0]
  """
  x = np.asarray(x).ravel()
  order = np.argsort(x, kind="mergesort")
  sorted_x = x[order]
  new_group = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
  group = np.cumsum(new_group) - 1  # group id of each sorted position
  starts = np.flatnonzero(new_group)
  ends = np.append(starts[1:], x.size)  # exclusive
  mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
  ranks = np.empty(x.size, np.float64)
  ranks[order] = mean_rank[group]
  return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
  """Spearman rank correlation: Pearson correlation of the average ranks.

  >>> spearman([1, 2, 3, 4], [1, 4, 9, 16])  # monotonic, not linear
  1.0
  """
  return pearson(rank_average(x), rank_average(y))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
  "accuracy": accuracy,
  "f1": f1,
  "matthews_corr": matthews_corr,
  "pearson": pearson,
  "spearman": spearman,
}


def compute(names: Sequence[str], predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """``{name: METRICS[name](predictions, labels)}`` for each name.

  >>> compute(["accuracy", "f1"], [1, 0, 1, 1], [1, 0, 0, 1])
  {'accuracy': 0.75, 'f1': 0.8}
  """
  return {name: METRICS[name](predictions, labels) for name in names}


def median_over_seeds(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
  """Per metric, the median over seeds (cramming reports the median of its fine-tuning runs); a missing value
  (None, e.g. NaN read back from JSON) counts as NaN.

  >>> median_over_seeds([{"accuracy": 0.7}, {"accuracy": 0.9}, {"accuracy": 0.8}])
  {'accuracy': 0.8}
  """
  if not per_seed:
    return {}
  value = lambda v: float("nan") if v is None else float(v)
  return {k: float(np.median([value(m[k]) for m in per_seed])) for k in per_seed[0]}
