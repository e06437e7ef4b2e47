"""Flax (Linen) models: crammed/original BERT, GPT-2 and T5 v1.1, each with its loss."""
