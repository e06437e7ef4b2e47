"""GLUE metrics in numpy against scipy and scikit-learn, degenerate cases included."""

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from came_jax.glue import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scipy_and_sklearn(seed):
  rng = np.random.default_rng(seed)
  n = 257
  labels = rng.integers(0, 2, n)
  preds = np.where(rng.random(n) < 0.7, labels, 1 - labels)
  assert metrics.accuracy(preds, labels) == pytest.approx(sklearn.metrics.accuracy_score(labels, preds))
  assert metrics.f1(preds, labels) == pytest.approx(sklearn.metrics.f1_score(labels, preds))
  assert metrics.matthews_corr(preds, labels) == pytest.approx(sklearn.metrics.matthews_corrcoef(labels, preds))
  three, three_pred = rng.integers(0, 3, n), rng.integers(0, 3, n)  # MNLI-like
  assert metrics.matthews_corr(three_pred, three) == pytest.approx(sklearn.metrics.matthews_corrcoef(three, three_pred))
  scores = rng.uniform(0, 5, n)
  noisy = scores + rng.normal(0, 1.5, n)
  assert metrics.pearson(noisy, scores) == pytest.approx(scipy.stats.pearsonr(noisy, scores)[0], abs=1e-12)
  assert metrics.spearman(noisy, scores) == pytest.approx(scipy.stats.spearmanr(noisy, scores)[0], abs=1e-12)
  tied, tied_labels = np.round(noisy), np.round(scores * 2) / 2  # many ties, as in STS-B's 0.2-step scores
  np.testing.assert_allclose(metrics.rank_average(tied), scipy.stats.rankdata(tied))
  assert metrics.spearman(tied, tied_labels) == pytest.approx(scipy.stats.spearmanr(tied, tied_labels)[0], abs=1e-12)


def test_metrics_degenerate_cases_follow_sklearn():
  labels = np.array([0, 1, 1, 0, 1])
  constant = np.zeros(5, int)
  assert metrics.matthews_corr(constant, labels) == sklearn.metrics.matthews_corrcoef(labels, constant) == 0.0
  assert metrics.f1(constant, labels) == sklearn.metrics.f1_score(labels, constant, zero_division=0) == 0.0
  assert np.isnan(metrics.pearson(np.ones(5), labels))
  assert metrics.median_over_seeds([{"a": 1.0}, {"a": 3.0}, {"a": 2.0}]) == {"a": 2.0}
  assert np.isnan(metrics.median_over_seeds([{"a": None}])["a"])
