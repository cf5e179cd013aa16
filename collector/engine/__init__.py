"""The processor stage: journal rows to batches, processors applied, results committed."""
