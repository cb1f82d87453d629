"""The Big/Little cascade: when Little asks Big (the rule), how the threshold is chosen, and whole runs."""
