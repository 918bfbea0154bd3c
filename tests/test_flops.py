"""Parameter and multiply-add counting against hand counts and the paper's published sizes."""

import pytest
import torch
from torch import nn

from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces.darts.space import info as network_info
from gdas.genotypes import REGISTRY
from gdas.spaces.darts.networks import NetworkCIFAR


def test_conv_mult_adds_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=True)
    # 8 x 5 x 5 outputs, each 3 x 3 x 3 multiply-adds; the bias is not counted.
    assert count_mult_adds(conv, (3, 5, 5)) == 8 * 5 * 5 * 3 * 3 * 3


def test_depthwise_and_strided_conv_by_hand():
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
    assert count_mult_adds(conv, (8, 8, 8)) == 8 * 4 * 4 * 9
    grouped = nn.Conv2d(4, 6, (1, 3), stride=(1, 2), padding=(0, 1), groups=2, bias=False)
    # Output 6 x 5 x 3; each output sees 4/2 input channels x 1 x 3 taps.
    assert count_mult_adds(grouped, (4, 5, 6)) == 6 * 5 * 3 * 2 * 3


def test_linear_and_composite_by_hand():
    assert count_mult_adds(nn.Linear(10, 4), (10,)) == 40
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * 2 * 2, 3),
    )
    # conv: 2 x 4 x 4 outputs x 9 taps; BN/ReLU/pool free; linear 8 x 3.
    assert count_mult_adds(model, (1, 6, 6)) == 2 * 4 * 4 * 9 + 8 * 3


def test_count_mult_adds_restores_mode_and_skips_training_only_modules():
    torch.manual_seed(0)
    with_aux = NetworkCIFAR(REGISTRY["GDAS"], C=8, N=1, num_classes=10, auxiliary=True).train()
    without = NetworkCIFAR(REGISTRY["GDAS"], C=8, N=1, num_classes=10, auxiliary=False)
    assert count_mult_adds(with_aux, (3, 32, 32)) == count_mult_adds(without, (3, 32, 32)) > 0
    assert with_aux.training
    assert count_parameters(with_aux) == count_parameters(without)
    assert count_parameters(with_aux, exclude=()) > count_parameters(without)


def test_count_parameters_by_prefix():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(3, 2))          # 8 parameters
    model.add_module("auxiliary_head", nn.Linear(2, 2))  # 6 parameters
    assert count_parameters(model) == 8
    assert count_parameters(model, exclude=()) == 14
    assert count_parameters(model, exclude=("body", "aux")) == 0


# Paper Tables 1, 2 and 5 (params in M without the auxiliary head; ImageNet mult-adds in M).
# Table 5 lists GDAS-N + GDAS-R at 3.3M while Table 1 says 3.4M; the network has 3.37M.
PAPER_CIFAR = [("GDAS", 3.4), ("GDAS_FRC", 2.5), ("GDAS_N_FIX_R", 3.0), ("FRC_N_GDAS_R", 2.9),
               ("FRC_N_FIX_R", 2.5)]


@pytest.mark.parametrize("name,params", PAPER_CIFAR)
def test_published_cifar_sizes(name, params):
    info = network_info(REGISTRY[name], "cifar10", C=36, N=6)
    assert round(info["params_M"], 1) == params
    assert info["params_aux_M"] > info["params_M"]
    assert (info["C"], info["N"], info["dataset"], info["input_size"]) == (36, 6, "cifar10", 32)


@pytest.mark.parametrize("name,C,params,mult_adds", [("GDAS", 50, 5.3, 581), ("GDAS_FRC", 52, 4.4, 497)])
def test_published_imagenet_sizes(name, C, params, mult_adds):
    info = network_info(REGISTRY[name], "imagenet", C=C, N=4)
    assert round(info["params_M"], 1) == params
    assert round(info["mult_adds_M"]) == mult_adds
    assert info["input_size"] == 224


def test_network_info_rejects_unknown_dataset():
    with pytest.raises(GdasError, match="unknown dataset"):
        network_info(REGISTRY["GDAS"], "svhn", C=8, N=1)
