"""The DARTS CNN search space: ops, the fixed reduction cell, genotype, supernet, derivation, final networks."""
