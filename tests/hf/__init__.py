"""Tests of came_jax.hf (a package, so that its test_<model>.py files do not clash with tests/models/)."""
