"""Typed configs and named presets for every gdas task."""
