"""Performance measurement: GDAS step vs its sampled child network vs DARTS, data and epoch timings."""
