"""Optimizers compared: at pretraining (equal steps and tokens, each at the rate a sweep picks) and at GLUE.

* ``runs``: one pretraining run at one rate and seed (resumable record), rate sweeps that extend their grid,
  choosing a rate, aggregating seeds;
* ``pretraining``: the pretraining comparison of a `configs/compare_*.py` config, its summary, the memory of the
  compared optimizers and the context-free reference loss;
* ``report``: its markdown tables and output files (summary.json, runs.csv, curves.csv, results.md);
* ``plots``: its figures (matplotlib, imported only when drawing);
* ``glue``: the GLUE fine-tuning comparison: every optimizer at every rate, the best rate per task, its tables;
* ``rate_table``: the kept rates of recorded comparisons and their ratio to AdamW's;
* ``momentum_precision``: CAME's momentum in float32, bfloat16 and 8 bits, same runs otherwise.
"""
