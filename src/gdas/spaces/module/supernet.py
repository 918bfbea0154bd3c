"""The search network of a module space: a user's module whose choices follow one Gumbel-max draw per label."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gdas.errors import GdasError
from gdas.nn.blocks import ChoiceBlock, InputChoice
from gdas.nn.labels import ChoiceValue, check_choice_map, labelled, value_of
from gdas.sampler import SAMPLERS, CellArch, Sample, cell_arch, sample


class ModuleSupernet(nn.Module):
    """`net` (any module holding gdas.nn choices) with one row of logits A per label, shape (1, candidates).

    `sample_arch` draws every label at once (one Gumbel-max draw, one transfer to the host per step) and
    returns one `CellArch` per label; `model(x, archs)` runs `net(x)` with each choice following its label's.
    """

    def __init__(self, net: nn.Module, *, sampler: str = "gdas", what: str = "the model"):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.net, self.sampler = net, sampler
        self.groups = labelled(net, what)
        self.labels = tuple(self.groups)
        self.arch = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(1, len(self.block(label).names)))
                                     for label in self.labels)
        self.widths = [len(self.block(label).names) for label in self.labels]
        self.picks = [self.block(label).n_chosen for label in self.labels]

    def block(self, label: str) -> ChoiceBlock:
        """The first choice under `label` (all of them share its candidates)."""
        return self.groups[label][0][1]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch)

    def weight_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.arch}
        return [p for p in self.parameters() if id(p) not in ids]

    def sample_arch(self, tau: float, *, arch_grad: bool, generator: Optional[torch.Generator] = None
                    ) -> list[CellArch]:
        """What every label's choices compute in the next forward pass. With `arch_grad=False` (the W step) no
        graph to A is kept and the sampled candidates run unscaled: exactly the sampled child."""
        widest = max(self.widths)
        with torch.set_grad_enabled(arch_grad and torch.is_grad_enabled()):
            logits = torch.cat([F.pad(a, (0, widest - a.shape[1]), value=float("-inf")) for a in self.arch])
            k = self.picks if any(n > 1 for n in self.picks) else None
            drawn = sample(logits, tau, self.sampler, generator, k=k)
        archs = []
        for row, picks in enumerate(self.picks):
            index = None if drawn.indices is None else drawn.indices[row]
            if index is not None and k is not None and picks == 1:  # a one-of-n label drawn beside k-of-n ones: its one index
                index = index[0]
            one = Sample(drawn.weights[row:row + 1].unsqueeze(0), None if index is None else [[index]])
            archs.append(cell_arch(one, 0, self.sampler, arch_grad))
        return archs

    def fixed_archs(self, choices: Mapping[str, ChoiceValue]) -> list[CellArch]:
        """The archs that run exactly the choices of a choice map (unscaled, as in a W step)."""
        indices = check_choice_map(self.groups, choices)
        return [CellArch(None, [indices[label]]) for label in self.labels]

    @contextmanager
    def following(self, archs: list[CellArch]) -> Iterator[None]:
        """Within the block, every choice follows its label's arch."""
        if len(archs) != len(self.labels):
            raise ValueError(f"need one arch per label ({len(self.labels)}), got {len(archs)}")
        for label, arch in zip(self.labels, archs):
            for _, block in self.groups[label]:
                block.arch = arch
        try:
            yield
        finally:
            for places in self.groups.values():
                for _, block in places:
                    block.arch = None

    def forward(self, x: Any, archs: list[CellArch]) -> Any:
        with self.following(archs):
            return self.net(x)

    def arch_logits(self) -> dict[str, nn.Parameter]:
        """A by the names of `probabilities`."""
        return dict(zip(self.labels, self.arch))

    def probabilities(self) -> dict[str, torch.Tensor]:
        """softmax(A) of every label, (1, candidates)."""
        with torch.no_grad():
            return {label: torch.softmax(a, -1) for label, a in zip(self.labels, self.arch)}

    def choice_names(self) -> dict[str, list[str]]:
        """The candidates of every label, by name, in A's column order."""
        return {label: list(self.block(label).names) for label in self.labels}


def derive_choices(groups: Mapping[str, list[tuple[str, ChoiceBlock]]],
                   probs: Mapping[str, Optional[torch.Tensor]]) -> dict[str, ChoiceValue]:
    """The choice map of softmax(A): each label's most likely candidate (an InputChoice of k: its k most likely
    inputs, in input order)."""
    choices: dict[str, ChoiceValue] = {}
    for label, places in groups.items():
        block, p = places[0][1], probs[label]
        if p is None:
            raise GdasError(f"no probabilities for label {label!r}")
        row = p.reshape(-1).float()
        if isinstance(block, InputChoice) and block.n_chosen > 1:
            choices[label] = value_of(block, row.topk(block.n_chosen).indices.tolist())
        else:
            choices[label] = value_of(block, int(row.argmax()))
    return choices


def random_choices(groups: Mapping[str, list[tuple[str, ChoiceBlock]]], generator: torch.Generator
                   ) -> dict[str, ChoiceValue]:
    """A uniformly random choice map (each label's candidates equally likely; k distinct inputs of n): what a
    random-architecture baseline draws."""
    choices: dict[str, ChoiceValue] = {}
    for label, places in groups.items():
        block = places[0][1]
        order = torch.randperm(len(block.names), generator=generator).tolist()
        choices[label] = value_of(block, sorted(order[:block.n_chosen]) if block.n_chosen > 1 else order[0])
    return choices
