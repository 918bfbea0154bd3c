"""The DARTS recurrent search space: cells, language models with A, derivation (T=1)."""
