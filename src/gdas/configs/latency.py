"""The config of `gdas latency build`: the final network a table describes (a search preset's space, cells and
images, at the size its training preset trains) and how it is measured (runtime, device, threads, batch, dtype)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from gdas.configs.base import check, check_choice, meta
from gdas.configs.files import resolve_config
from gdas.configs.runtime import validate_runtime
from gdas.configs.search import IMAGE_SPACES, MODULE_PREFIX, SEARCH_TABLE, SearchConfig
from gdas.configs.train import TRAIN_PRESETS
from gdas.errors import GdasError
from gdas.latency.table import FITS
from gdas.latency.timing import CLOCKS, DTYPES, RUNTIMES, Settings
from gdas.spaces import get_space
from gdas.spaces.module.factory import load as load_factory
from gdas.spaces.shapes import DATASET_SHAPES, Shape, dataset_shape

# The named datasets whose shape a table can be built for (the CIFAR layout); own data: --channels, --image-size,
# --num-classes over one of them.
LATENCY_DATASETS = tuple(name for name in DATASET_SHAPES if name != "imagenet")
LATENCY_PRESET_HELP = ("the search preset the table is for (its counterpart in --space): its cells and images; the "
                       "final network is the size its training preset of the same name trains (demo: C=8, N=1), "
                       "else the size --cost counts at")


@dataclass(frozen=True)
class MeasureConfig:
    """How a latency is measured: the options `gdas latency build` and `gdas bench network` share."""

    runtime: str = field(default="torch", metadata=meta(
        "torch (eager) or onnxruntime (exported to ONNX, each candidate op or the whole network, and run in an "
        "inference session; pip install 'gdas-nas[latency]')", RUNTIMES))
    device: str = field(default="cpu", metadata=meta("cpu, cuda or cuda:N (the device the network is for)"))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (default: torch's, all cores)"))
    batch: int = field(default=1, metadata=meta("images per inference call"))
    dtype: str = field(default="float32", metadata=meta("float32; bfloat16, or float16 on CUDA", tuple(DTYPES)))
    channels_last: Optional[bool] = field(default=None, metadata=meta(
        "torch runtime: channels_last (NHWC) memory format (default auto: on on the CPU, off on CUDA)"))
    clock: str = field(default="wall", metadata=meta(
        "wall: the latency a deployment sees; cpu: the process's CPU time (one CPU thread), which other processes "
        "on a shared machine do not inflate", tuple(CLOCKS)))

    def settings(self) -> Settings:
        """How to measure, resolved on this machine (threads and memory format as they will be used)."""
        return Settings.here(self.runtime, self.device, self.threads, self.batch, self.dtype, self.channels_last,
                             self.clock)


@dataclass(frozen=True)
class LatencyConfig(MeasureConfig):
    """What a latency table is built for and how it is measured (`gdas latency build`)."""

    space: str = field(default="darts", metadata=meta(
        f"search space: {', '.join(IMAGE_SPACES)}, or a module of your own as {MODULE_PREFIX}package.module:Factory"))
    preset: str = field(default="demo", metadata=meta(LATENCY_PRESET_HELP, tuple(SEARCH_TABLE.names())))
    dataset: Optional[str] = field(default=None, metadata=meta(
        "the images' shape (default: the preset's dataset)", LATENCY_DATASETS))
    channels: Optional[int] = field(default=None, metadata=meta("input channels of your own images"))
    image_size: Optional[int] = field(default=None, metadata=meta("side of your own square images"))
    num_classes: Optional[int] = field(default=None, metadata=meta("classes of your own data"))
    C: Optional[int] = field(default=None, metadata=meta("initial channels of the final network"))
    N: Optional[int] = field(default=None, metadata=meta("cells per block / stage of the final network"))
    steps: Optional[int] = field(default=None, metadata=meta("intermediate nodes per cell (default: the preset's)"))
    frc: Optional[bool] = field(default=None, metadata=meta("darts space: the fixed reduction cell"))
    calibration: int = field(default=5, metadata=meta(
        "random networks measured whole to fit --fit on (0: none, the plain sum)"))
    fit: str = field(default="scale", metadata=meta(
        "what the calibration networks fit: scale (the ops' sum is multiplied: ops in a network run slower than "
        "alone), overhead (a constant is added) or none (the plain sum of the fixed part and the ops)", FITS))
    seed: int = field(default=0, metadata=meta(
        "seed of the calibration networks (the timed inputs are the same for every seed)"))

    def search_config(self) -> SearchConfig:
        """The search the table is for: the preset in --space with --dataset, --steps, --frc over it."""
        given = {k: v for k, v in (("dataset", self.dataset), ("steps", self.steps), ("frc", self.frc))
                 if v is not None}
        return resolve_config(SearchConfig, SEARCH_TABLE, kind="search",
                              preset=SEARCH_TABLE.in_space(self.preset, self.recipe_space),
                              overrides={"space": self.space, **given}, space_of=lambda _: self.recipe_space)

    @property
    def recipe_space(self) -> str:
        """The space whose presets the table's search takes: a module of your own, the MobileNet-style space's (as
        gdas search takes them)."""
        return "mobilenet" if self.space.startswith(MODULE_PREFIX) else self.space

    def shape(self, search: SearchConfig) -> Shape:
        """(channels, side, classes): the search's dataset's, with --channels, --image-size, --num-classes."""
        base = dataset_shape(search.dataset, network=self.space)
        given = (self.channels, self.image_size, self.num_classes)
        channels, side, classes = (g if g is not None else b for g, b in zip(given, base))
        return channels, side, classes

    def size(self, search: SearchConfig) -> tuple[int, int]:
        """(C, N) of the final network: --C, --N over the training preset that bears the search preset's name."""
        train = TRAIN_PRESETS.get(search.preset)
        C, N = (train.C, train.N) if train is not None else search.final_size
        return (C if self.C is None else self.C), (N if self.N is None else self.N)

    def validate(self) -> None:
        if self.space.startswith(MODULE_PREFIX):
            load_factory(self.space)  # a path that names nothing fails now
        else:
            check_choice(self.space, IMAGE_SPACES, "--space")
        check(self.dataset is None or self.dataset in LATENCY_DATASETS,
              f"--dataset {self.dataset!r} is not one of: {', '.join(LATENCY_DATASETS)}")
        check_choice(self.runtime, RUNTIMES, "--runtime")
        check_choice(self.dtype, tuple(DTYPES), "--dtype")
        check(self.device != "auto", "--device auto is not a device a table can describe; name it: cpu or cuda")
        validate_runtime(self.device, "none", self.threads)
        check(self.batch >= 1, f"--batch must be at least 1, got {self.batch}")
        check(self.calibration >= 0, f"--calibration must be at least 0, got {self.calibration}")
        check_choice(self.fit, FITS, "--fit")
        for name in ("channels", "image_size", "num_classes", "C", "N"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}")
        check(self.channels in (None, 1, 3), f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        space = get_space(self.space)
        check(space.layout is not None and space.choices is not None,
              f"the {space.name} space has no latency layout; latency tables are for image spaces with one")
        search = self.search_config()
        if space.check_input is not None:
            space.check_input(self.shape(search)[1], False)
        C, N = self.size(search)
        try:  # a size the final network cannot take (an odd C in darts) is one line now, not a failure later
            space.layout(search, search.dataset, C, N, shape=self.shape(search)).free_network()
        except (ValueError, RuntimeError) as exc:
            raise GdasError(f"the final network cannot be built at C={C}, N={N}: {exc}; pick another --C / --N") \
                from None
        self.settings().check()

    def record(self, search: SearchConfig) -> dict[str, Any]:
        """What the table says it describes besides its places: the network and the search config."""
        C, N = self.size(search)
        channels, side, classes = self.shape(search)
        return {"C": C, "N": N, "channels": channels, "input_size": side, "num_classes": classes,
                "dataset": search.dataset, "preset": search.preset}
