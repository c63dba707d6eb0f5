"""Shared test helpers: compose the real configs, write tiny datasets in real on-disk formats."""
from __future__ import annotations

import os
from pathlib import Path

# Every test runs with portable numerics (bnrepro/numerics.py): the same floats on any x86-64 CPU, so numbers
# recorded on one machine (tests/data/golden_loop) are compared bit for bit on another. Set before bnrepro and
# torch load, and inherited by the subprocesses tests start.
os.environ["BNREPRO_PORTABLE_NUMERICS"] = "1"
import bnrepro  # noqa: E402,F401 - pins torch's code paths as it loads torch

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)  # tiny models: threads only add overhead, and tests may run beside other jobs


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def data_cfg(name: str, **kw):
    """A dataset's config as a run composes it (configs/data/<name>.yaml over bnrepro.schema.Data's defaults),
    without augmentation or a validation split unless kw sets them, kw set unchecked (a name that is no
    dataset gets the schema's defaults, for the loader's own error)."""
    from bnrepro.schema import Data

    try:
        base = compose_cfg(f"data={name}").data
    except Exception:  # noqa: BLE001 - hydra's error for an unknown option
        base = OmegaConf.create({**Data.node(), "name": name})
    return OmegaConf.merge(base, {"augment": False, "val_split": 0.0}, kw)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of MNIST: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A tiny MNIST in torchvision's layout: <root>/MNIST/raw/*-ubyte, uncompressed."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        images[np.arange(n), labels * 2 + 3, 4:24] = 255  # a class-dependent stroke: learnable
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path / "mnist"


@pytest.fixture
def compiled_shapes(monkeypatch) -> list[bool]:
    """torch.compile records, for every graph Dynamo captures, whether its inputs have symbolic (shape-generic)
    sizes, and runs the graph eagerly: the list the test reads after compiling."""
    symbolic: list[bool] = []

    def recorder(gm, example_inputs):
        symbolic.append(any(isinstance(d, torch.SymInt) for n in gm.graph.nodes if n.op == "placeholder"
                            for d in getattr(n.meta.get("example_value"), "shape", ())))
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=recorder, **kw))
    return symbolic

