"""Measure the input pipeline's throughput, to compare with the training step's tokens/s.

The pipeline should deliver at least 5x the tokens/s of the step it feeds. Run on the sample corpus::

    python -m came_jax.data.throughput --path ../shared/data/corpus --objective mlm --seq_len 128 --batch_size 32

It trains (or loads) a tokenizer in ``--workdir``, tokenizes once into the cache, then times ``next()`` on the
prefetched iterator.
"""

from __future__ import annotations

import argparse
import time


def measure_throughput(iterator, num_batches: int = 50, warmup: int = 2) -> float:
    """Tokens per second delivered by ``next(iterator)``, counting every ``input_ids`` position (padding too).

    ``warmup`` batches are drawn first and not timed (thread start, first permutation).
    """
    for _ in range(warmup):
        next(iterator)
    tokens = 0
    start = time.perf_counter()
    for _ in range(num_batches):
        tokens += next(iterator)["input_ids"].size
    return tokens / (time.perf_counter() - start)


def main(argv=None) -> None:
    from came_jax.data import pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="corpus folder, glob or file")
    parser.add_argument("--workdir", default="/tmp/came_jax_data_throughput")
    parser.add_argument("--objective", default="mlm", choices=["mlm", "causal", "span"])
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--vocab_size", type=int, default=32768)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args(argv)

    cfg = pipeline.default_config()
    cfg.update(dict(path=args.path, objective=args.objective, seq_len=args.seq_len, batch_size=args.batch_size,
                    vocab_size=args.vocab_size, cache_dir=f"{args.workdir}/token_cache"))
    start = time.perf_counter()
    tok = pipeline.build_tokenizer(cfg, args.workdir)
    print(f"tokenizer: {tok} ({time.perf_counter() - start:.1f}s)")
    start = time.perf_counter()
    it = pipeline.from_config(cfg, tok)
    print(f"tokenized/cached: {it.rows.corpus.stats} ({time.perf_counter() - start:.1f}s); {it.num_rows} rows")
    rate = measure_throughput(it, args.batches)
    it.close()
    print(f"{args.objective} B={args.batch_size} T={args.seq_len}: {rate:,.0f} tokens/s")


if __name__ == "__main__":
    main()
