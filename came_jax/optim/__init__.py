"""Optimizers: CAME and the registry that builds any optimizer from a config."""
