"""The run machinery: epoch loop, run directory, distributed helpers, progress, experiment tracking."""
