"""Data: tokenizer, text sources, packing, objectives (MLM, causal LM, span corruption), batching.

* ``tokenizer.py``   the tokenizer protocol; our SentencePiece ``Tokenizer`` (fixed special ids, T5 sentinels,
  ``load_or_train``) and ``HFTokenizer`` (a Hugging Face folder's tokenizer, its own special ids); ``load``.
* ``sources.py``     local text folders/globs, TFDS by name (array_record), WikiText held-out articles.
* ``token_cache.py`` tokenize a source once; ids + document offsets cached on disk.
* ``packing.py``     ``PackedRows``: fixed-width rows over documents joined by separators (no token lost).
* ``objectives.py``  ``MaskedLM``, ``CausalLM``, ``SpanCorruption``: rows -> static-shape numpy batches.
* ``pipeline.py``    resumable, prefetched ``PretrainIterator``; ``EvalBatches``; builders from a config.
* ``throughput.py``  how fast batches are built: ``measure_throughput`` (prefetched), ``build_rate`` (one thread).
"""
