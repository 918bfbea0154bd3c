"""Final CNN networks: shapes, auxiliary head, drop-path, FRC and Table-5 genotypes, bad genotypes."""

import pytest
import torch

from gdas.errors import GdasError
from gdas.networks import split_output
from gdas.spaces.darts.fixed_cell import FixedReductionCell
from gdas.genotypes import REGISTRY, Genotype
from gdas.spaces.darts.networks import (AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet, Cell, NetworkCIFAR, NetworkImageNet,
                           build_network, drop_path)

GDAS = REGISTRY["GDAS"]


def test_drop_path_identity_in_eval_and_at_zero():
    x = torch.randn(6, 4, 3, 3)
    assert drop_path(x, 0.3, training=False) is x
    assert drop_path(x, 0.0, training=True) is x


def test_drop_path_drops_whole_samples_and_preserves_the_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(20000, 2, 2, 2)
    y = drop_path(x, 0.25, training=True, generator=g)
    per_sample = y.flatten(1)
    # Every sample is either fully dropped or fully kept and scaled by 1/keep.
    assert torch.all((per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(4 / 3)).all(1))
    kept = (per_sample[:, 0] != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03
    with pytest.raises(ValueError):
        drop_path(x, 1.0, training=True)


def test_drop_path_generator_is_reproducible():
    x = torch.randn(64, 3, 2, 2)
    a = drop_path(x, 0.5, True, torch.Generator().manual_seed(3))
    b = drop_path(x, 0.5, True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["GDAS", "GDAS_FRC", "DARTS_V2", "GDAS_N_FIX_R", "FRC_N_GDAS_R"])
def test_cifar_network_shapes(name):
    torch.manual_seed(0)
    net = NetworkCIFAR(REGISTRY[name], C=8, N=1, num_classes=10, auxiliary=True)
    assert len(net.cells) == 5
    x = torch.randn(2, 3, 32, 32)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    net.eval()
    logits = net(x)  # eval mode: the logits alone
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)


def test_fixed_reduction_used_when_genotype_has_no_reduce_cell():
    net = NetworkCIFAR(REGISTRY["GDAS_FRC"], C=8, N=1, num_classes=10, auxiliary=False)
    kinds = [type(c) for c in net.cells]
    assert [issubclass(k, FixedReductionCell) for k in kinds] == [False, True, False, True, False]
    # Reduction cells double C: the fixed cell at index 1 outputs 4 * 16 channels.
    assert net.cells[1].pre1[1].out_channels == 16 and net.cells[3].pre1[1].out_channels == 32
    assert all(bn.affine for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    with pytest.raises(GdasError, match="divisible by 8"):
        NetworkCIFAR(REGISTRY["GDAS_FRC"], C=6, N=1, num_classes=10, auxiliary=False)


def test_cifar_channels_and_reductions():
    net = NetworkCIFAR(GDAS, C=8, N=2, num_classes=10, auxiliary=True)
    reductions = [i for i, c in enumerate(net.cells) if c.reduction]
    assert reductions == [2, 5] and len(net.cells) == 8
    # C doubles at each reduction: 8 -> 16 -> 32; the auxiliary head sits after the second one.
    assert net.cells[2].pre1[1].out_channels == 16 and net.cells[5].pre1[1].out_channels == 32
    assert net.auxiliary_head.features[0].in_channels == 4 * 32 == net.classifier.in_features


def test_imagenet_network_shapes():
    torch.manual_seed(0)
    net = NetworkImageNet(GDAS, C=16, N=1, num_classes=7, auxiliary=True)
    x = torch.randn(2, 3, 224, 224)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    assert isinstance(net.auxiliary_head, AuxiliaryHeadImageNet)
    net.eval()
    assert isinstance(net(x), torch.Tensor)
    # The first cell sees the stride-4 stem0 output through FactorizedReduce.
    assert type(net.cells[0].pre0).__name__ == "FactorizedReduce"


def test_fashion_mnist_layout_28x28_one_channel():
    net = build_network(REGISTRY["GDAS_FRC"], "fashion-mnist", C=8, N=1, num_classes=10, auxiliary=True,
                        in_channels=1)
    assert isinstance(net, NetworkCIFAR)
    net.train()
    logits, aux = net(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net = build_network(GDAS, "fashion-mnist", C=8, N=1, num_classes=10, auxiliary=True, in_channels=1)
    assert net(torch.randn(2, 1, 28, 28))[1].shape == (2, 10)


def test_build_network_dispatch():
    assert isinstance(build_network(GDAS, "imagenet", 8, 1, 5, False), NetworkImageNet)
    assert isinstance(build_network(GDAS, "cifar100", 8, 1, 100, False), NetworkCIFAR)


def test_auxiliary_head_pooling_and_small_maps():
    head = AuxiliaryHeadCIFAR(16, 10)
    assert head(torch.randn(2, 16, 8, 8)).shape == (2, 10)
    with pytest.raises(GdasError, match="at least 6x6"):
        head(torch.randn(2, 16, 4, 4))


def test_drop_path_only_changes_training_outputs():
    torch.manual_seed(0)
    net = NetworkCIFAR(REGISTRY["GDAS_FRC"], C=8, N=1, num_classes=10, auxiliary=False)
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    net.drop_path_prob = 0.0
    ref = net(x)
    net.drop_path_prob = 0.5
    assert torch.equal(net(x), ref)  # eval ignores drop-path
    net.train()
    torch.manual_seed(1)
    a = net(x)
    net.drop_path_prob = 0.0
    torch.manual_seed(1)
    b = net(x)
    assert not torch.allclose(a, b)


def test_cell_skips_drop_path_on_identity_edges():
    nodes = ((("skip_connect", 0), ("skip_connect", 1)),)
    cell = Cell(nodes, (2,), 4, 4, 4, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    a = cell(s0, s1, 0.9)
    b = cell(s0, s1, 0.0)
    assert torch.equal(a, b)


def test_custom_concat_channels_are_consistent():
    nodes = ((("sep_conv_3x3", 0), ("skip_connect", 1)), (("dil_conv_3x3", 2), ("max_pool_3x3", 1)))
    geno = Genotype(nodes, (1, 2, 3), nodes, (2, 3))
    net = NetworkCIFAR(geno, C=8, N=1, num_classes=3, auxiliary=True).train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3) and aux.shape == (2, 3)
    assert net.cells[0].multiplier == 3 and net.classifier.in_features == 3 * 32


def test_reduction_concat_of_input_node_is_rejected():
    nodes = ((("sep_conv_3x3", 0), ("skip_connect", 1)),)
    geno = Genotype(nodes, (2,), nodes, (0, 2))
    with pytest.raises(GdasError, match="reduction cell concat"):
        NetworkCIFAR(geno, C=8, N=1, num_classes=10, auxiliary=False)


def test_out_of_range_inputs_are_rejected():
    with pytest.raises(GdasError, match="earlier node"):
        Cell(((("skip_connect", 2),),), (2,), 4, 4, 4, False, False)
    with pytest.raises(GdasError, match="concat"):
        Cell(((("skip_connect", 0),),), (5,), 4, 4, 4, False, False)
    with pytest.raises(GdasError, match="CNN genotype"):
        NetworkCIFAR(REGISTRY["GDAS_RNN"], C=8, N=1, num_classes=10, auxiliary=False)


def test_split_output_reads_the_logits_and_either_pair():
    logits, aux = torch.randn(2, 3), torch.randn(2, 3)
    assert split_output(logits)[0] is logits and split_output(logits)[1] is None
    assert split_output((logits, aux)) == (logits, aux)
    assert split_output((logits, None)) == (logits, None)  # a network written to the older contract
