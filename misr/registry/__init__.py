"""Model registration: the promotion gate with GTO tags, and retraining when new data lands."""
