r"""How fast an experiment config's input pipeline delivers batches, to set beside the training step's tokens/s.

  python -m experiments.bench_input_pipeline --config configs/bert_cramming.py:tiny \
      --config.data.path=../shared/data/corpus [--batches 200] [--workdir /tmp/came_jax_input_pipeline]

Builds (or loads) the config's tokenizer in WORKDIR, tokenizes the corpus once into the token cache, then times
the one-thread build rate (`came_jax.data.throughput.build_rate`, which the trainer logs) and `next()` on
the prefetched iterator (`measure_throughput`). The trainer logs its own step's tokens/s next to the first.
"""

from __future__ import annotations

import time

from absl import flags
from ml_collections import config_flags

from came_jax import cli
from came_jax.data import throughput
from came_jax.train import input_pipeline

config_flags.DEFINE_config_file("config", None, "An experiment config (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", "/tmp/came_jax_input_pipeline", "Where the tokenizer is trained or loaded.")
flags.DEFINE_integer("batches", 200, "Batches timed per measurement.")
flags.mark_flag_as_required("config")
FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  config = FLAGS.config
  start = time.perf_counter()
  tokenizer = input_pipeline.make_tokenizer(config, FLAGS.workdir)
  print(f"tokenizer: {tokenizer.vocab_size} pieces ({time.perf_counter() - start:.1f} s)")
  start = time.perf_counter()
  it = input_pipeline.make_train_iterator(config, tokenizer)
  print(f"token cache: {it.rows.corpus.stats} ({time.perf_counter() - start:.1f} s); {it.num_rows:,} rows")
  try:
    built = throughput.build_rate(it, FLAGS.batches)
    fetched = throughput.measure_throughput(it, FLAGS.batches)
  finally:
    it.close()
  d = config.data
  print(f"\n{d.objective}, {d.batch_size} x {d.seq_len} tokens per batch, {FLAGS.batches} batches\n")
  print("| measurement | tokens/s | vs one thread |\n|---|---:|---:|")
  print(f"| one thread building batches (`build_rate`) | {built:,.0f} | 1.00× |")
  print(f"| prefetched `next()` (`measure_throughput`) | {fetched:,.0f} | {fetched / built:.2f}× |")


if __name__ == "__main__":
  cli.run(main)
