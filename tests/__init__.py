"""The tests mirror the package: `came_jax/<pkg>/<module>.py` is tested in `tests/<pkg>/test_<module>.py` (and in
extra suites `tests/<pkg>/test_<module>_<aspect>.py`). Every test folder is a package, so that every test module
has a unique dotted name (`tests.glue.test_metrics`, `tests.train.test_metrics`) and helpers are imported by it
(`from tests.train import standin`)."""
