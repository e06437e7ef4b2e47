"""Benchmarks: what the launchers `experiments/bench_*.py`, `memory_table.py` and `startup_spike.py` measure.

* ``timing``: blocking, repeated and interleaved timing of jitted calls (the one copy every benchmark uses);
* ``shapes``: parameter shapes of full-size models without allocating, and pytree byte counts;
* ``memory``: params + grads + optimizer state per model and optimizer (``jax.eval_shape``);
* ``optimizer_step``: one optimizer update on real parameter shapes, against optax and the PyTorch references;
* ``train_step``: the trainer's own step on synthetic batches: step time, tokens/s, MFU, memory, compile time;
* ``hlo_profile``: where a train step's time goes, by HLO op category and by part of the step;
* ``train_loop``: the whole trainer on a config, step-bounded;
* ``startup_spike``: CAME's update scale against Adam's over the first steps.
"""
