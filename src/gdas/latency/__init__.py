"""Latency tables of a final network on the user's device: measuring, checking and predicting (docs/latency.md)."""
