"""The time-bounded training loop shared by all models.

`trainer.train_and_evaluate(config, workdir)` is the entry point (`experiments/pretrain.py` is its launcher);
`budget` holds the clock, `schedules` the progress-driven learning rate and batch ramp, `step` the jitted step,
`checkpoint` the orbax checkpoints and workdir identity, `metrics` MFU and the writers, `validation` the config
checks, and `input_pipeline` what the loop takes from `came_jax.data`.
"""
