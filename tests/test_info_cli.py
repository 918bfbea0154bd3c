"""Tests of `gdas info --num-classes/--image-size/--channels`: a network sized for a user's data before training."""

from __future__ import annotations

import json

import pytest
import torch

from cli_helpers import expect_error, run_cli
from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.genotypes import load_genotype
from gdas.spaces import get_space
from gdas.spaces.nb201 import NB201Network
from gdas.spaces.nb201.cost import bias_adds
from gdas.spaces.shapes import dataset_shape


def _info(capsys, *argv: str) -> dict:
    assert run_cli("info", *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_darts_network_sized_for_own_data(capsys):
    """The counts are those of the network built at that shape, which reads such images into K logits."""
    info = _info(capsys, "GDAS", "--num-classes", "5", "--image-size", "64", "--channels", "1", "--C", "16", "--N", "2")
    assert {k: info[k] for k in ("num_classes", "channels", "input_size", "C", "N", "auxiliary")} == {
        "num_classes": 5, "channels": 1, "input_size": 64, "C": 16, "N": 2, "auxiliary": True}
    network = get_space("darts").build_network(load_genotype("GDAS"), dataset="cifar10", C=16, N=2, num_classes=5,
                                               auxiliary=True, in_channels=1)
    assert info["params_M"] == round(count_parameters(network) / 1e6, 4)
    assert info["params_aux_M"] == round(count_parameters(network, exclude=()) / 1e6, 4)
    assert info["mult_adds_M"] == round(count_mult_adds(network, (1, 64, 64)) / 1e6, 4)
    network.train()
    logits, aux = network(torch.zeros(2, 1, 64, 64))
    assert logits.shape == aux.shape == (2, 5)

    assert run_cli("info", "GDAS", "--num-classes", "5", "--image-size", "64", "--channels", "1", "--C", "16",
                   "--N", "2") == 0
    text = capsys.readouterr().out
    assert text.startswith("GDAS on 1x64x64 images, 5 classes (C=16, N=2, layout of cifar10)")
    assert f"{info['params_M']:.2f} M without the auxiliary head ({info['params_aux_M']:.2f} M with it)" in text


def test_defaults_come_from_the_dataset_and_options_replace_them(capsys):
    cifar = _info(capsys, "GDAS")
    assert (cifar["channels"], cifar["input_size"], cifar["num_classes"]) == dataset_shape("cifar10")
    assert cifar["params_M"] == pytest.approx(3.37, abs=0.01) and (cifar["C"], cifar["N"]) == (36, 6)
    # Only the classifier grows with the classes: 100 more classes add 100 x 577 (weights and bias) parameters.
    more = _info(capsys, "GDAS", "--num-classes", "110")
    assert more["params_M"] == pytest.approx(cifar["params_M"] + 100 * 577 / 1e6, abs=1e-4)
    assert more["mult_adds_M"] == pytest.approx(cifar["mult_adds_M"] + 100 * 576 / 1e6, abs=1e-4)
    fashion = _info(capsys, "GDAS", "--dataset", "fashion-mnist")
    assert (fashion["channels"], fashion["input_size"]) == (1, 28)
    assert _info(capsys, "GDAS", "--channels", "1", "--image-size", "28") == {**fashion, "dataset": "cifar10"}
    assert run_cli("info", "GDAS") == 0
    assert capsys.readouterr().out.startswith("GDAS on cifar10 (C=36, N=6, 3x32x32 images, 10 classes)")


@pytest.mark.parametrize("dataset, size, aux", [("cifar10", 21, True), ("cifar10", 20, False),
                                                ("imagenet", 192, True), ("imagenet", 160, False)])
def test_auxiliary_head_counted_only_where_it_fits(capsys, dataset, size, aux):
    """Below the head's input size (a 6x6 map after the second reduction) its parameters are left out."""
    info = _info(capsys, "GDAS", "--dataset", dataset, "--image-size", str(size), "--C", "8", "--N", "1")
    assert info["auxiliary"] is aux and ("params_aux_M" in info) is aux and info["input_size"] == size
    if not aux:
        assert run_cli("info", "GDAS", "--dataset", dataset, "--image-size", str(size), "--C", "8", "--N", "1") == 0
        assert "(no auxiliary head: the input is too small for it)" in capsys.readouterr().out


def test_nb201_network_sized_for_own_data(capsys):
    arch = "nb201-best-cifar100"
    info = _info(capsys, arch, "--image-size", "28", "--channels", "1", "--num-classes", "5", "--C", "8", "--N", "1")
    network = NB201Network(load_genotype(arch), 8, 1, 5, in_channels=1)
    assert info["params_M"] == round(count_parameters(network, exclude=()) / 1e6, 4)
    image = (1, 28, 28)
    assert info["mult_adds_M"] == round((count_mult_adds(network, image) + bias_adds(network, image)) / 1e6, 4)
    assert (info["channels"], info["input_size"], info["num_classes"]) == (1, 28, 5) and "auxiliary" not in info
    assert network(torch.zeros(2, *image)).shape == (2, 5)


def test_bad_shapes_are_one_line_errors(capsys):
    expect_error(capsys, "info", "GDAS", "--channels", "2", contains="--channels must be 1 (grayscale) or 3 (RGB)")
    expect_error(capsys, "info", "GDAS", "--num-classes", "0", contains="--num-classes must be at least 1")
    expect_error(capsys, "info", "GDAS", "--image-size", "0", contains="--image-size must be at least 1")
    expect_error(capsys, "info", "nb201-best-cifar100", "--image-size", "30",
                 contains="multiple of 4, got 30x30; pass --image-size 28 (or 32)")
    expect_error(capsys, "info", "nb201-best-cifar100", "--dataset", "imagenet",
                 contains="unknown dataset 'imagenet' for the size of a NAS-Bench-201 network")
    expect_error(capsys, "info", "GDAS_RNN", "--num-classes", "5", contains="drop them for a recurrent genotype")


def test_dataset_shape_of_own_data_needs_the_shape():
    assert dataset_shape("folder", (1, 28, 5)) == dataset_shape("FOLDER", [1, 28, 5]) == (1, 28, 5)
    with pytest.raises(GdasError, match="folder data has no fixed shape"):
        dataset_shape("folder")
    with pytest.raises(GdasError, match=r"each at least 1; got \(1, 0, 5\)"):
        dataset_shape("npz", (1, 0, 5))
