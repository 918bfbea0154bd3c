"""The MobileNet-style space's registration (`--space mobilenet`): a module space whose sizes come from the config
(C: the stem's width, 32 = MobileNetV2 1.0; N: blocks per stage; the ImageNet layout for imagenet, else 28-32 px)."""

from __future__ import annotations

from typing import Any

from gdas.spaces.mobilenet.net import MobileNetSpace, mobilenet_v2_choices
from gdas.spaces.module.genotype import ChoiceMap
from gdas.spaces.module.space import module_space

NAME = "mobilenet"
BASE_WIDTH = 32  # MobileNetV2 1.0's stem: C = 32 x the width multiplier


def sizes(dataset: str, C: int, N: int) -> dict[str, Any]:
    return {"width": (C or BASE_WIDTH) / BASE_WIDTH, "depth": N or 4,
            "layout": "imagenet" if dataset == "imagenet" else "cifar"}


SPACE = module_space(
    NAME, MobileNetSpace, sizes=sizes,
    description="MobileNet-style chain (ProxylessNAS / FBNet): inverted residuals choosing kernel 3/5/7 and "
                "expansion 3/6, skips for depth; widths and strides fixed per stage",
    published={"mobilenet-v2": ChoiceMap.of(NAME, mobilenet_v2_choices())})
