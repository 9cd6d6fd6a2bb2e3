"""Restoring files: the streaming block engine, the do-no-harm guard, file plans, batches."""
