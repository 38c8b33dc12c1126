"""Background work: short, resumable batches that are safe with several replicas."""
