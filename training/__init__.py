"""Data generation, training stages and evaluation for the agent (torch)."""
