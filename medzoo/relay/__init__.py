"""Relay learning: one trainer, strategies as hooks, the baton file, baselines and forgetting reports."""
