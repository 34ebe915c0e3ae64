"""Training: batches, set-up, the resumable loop, checkpoints, inference."""
