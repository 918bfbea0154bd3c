"""The NAS-Bench-201 search space: ops, genotype, supernet, derivation, inference network, size and benchmark."""

from gdas.spaces.nb201.cost import nb201_info
from gdas.spaces.nb201.derive import derive_nb201
from gdas.spaces.nb201.genotype import NB201_REGISTRY, NB201Genotype
from gdas.spaces.nb201.networks import NB201Network
from gdas.spaces.nb201.ops import NB201_OPS, PARAM_FREE
from gdas.spaces.nb201.supernet import NB201SearchNetwork

__all__ = ["NB201Genotype", "NB201_REGISTRY", "NB201SearchNetwork", "NB201Network", "derive_nb201", "nb201_info",
           "NB201_OPS", "PARAM_FREE"]
