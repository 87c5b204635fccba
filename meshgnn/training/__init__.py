"""Losses, the training loop, checkpoints, schedules and metric logging."""
