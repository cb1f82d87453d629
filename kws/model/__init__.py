"""A trained model: its metadata (the one source of truth) and the TFLite runtime that runs it."""
