"""The time-bounded training loop shared by all models."""
