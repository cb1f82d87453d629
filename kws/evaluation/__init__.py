"""Measuring a model on labelled clips: accuracy, per-label accuracy, confusion matrices."""
