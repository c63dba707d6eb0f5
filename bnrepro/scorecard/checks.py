"""What the scorecard checks before it trains anything: that the layer is a norm layer at all (exit 2 with one
`error:` line when it is not), and, per property, whether the property applies to it (a cell "not applicable"
with the reason when it does not)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError
from bnrepro.norm import Norm, validate_batch

INPUTS = {"features (N, C)": ((2, 8), 1), "sequences (N, C, L)": ((2, 8, 5), 1), "maps (N, C, H, W)": ((2, 8, 4, 4), 2)}


def _train_step(layer: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = layer(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ShapeChange(f"it maps an input of shape {tuple(x.shape)} to {got}")
    y.square().sum().backward()


class ShapeChange(Exception):
    pass


def check_layer(norm: str, options: dict) -> dict[str, str | None]:
    """Build the norm for 8 channels and train it one step on a batch of 2 of each input the nets give a norm:
    {input: None, or why it fails there}. ConfigError (the caller exits 2 with its line) when the norm is no
    norm: a name or dotted path that does not resolve, a layer that changes its input's shape, one that fails on
    a batch of 2 of every input."""
    factory = Norm(norm, **options)  # ConfigError: not a norm, or bad options
    if not factory.enabled:
        return {kind: None for kind in INPUTS}
    fails = {}
    n = max(2, factory.ghost_batch)  # ghost norms: one ghost batch
    for kind, (shape, dim) in INPUTS.items():
        try:
            layer = factory(shape[1], dim).train()
            _train_step(layer, (n, *shape[1:]))
            fails[kind] = None
        except ShapeChange as e:
            raise ConfigError(f"norm={norm} changes the tensor's shape ({e}): a norm layer must return a tensor "
                              "of its input's shape (normalize, then scale and shift per channel)") from None
        except Exception as e:  # noqa: BLE001 - the layer's own failure, reported in one line
            fails[kind] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if all(fails.values()):
        first = next(iter(fails.values()))
        raise ConfigError(f"norm={norm} fails on a batch of 2 of every input a norm gets ({first}): make "
                          f"{norm.rsplit('.', 1)[-1]}(channels) build a layer whose forward and backward run on "
                          "(2, C), (2, C, L) and (2, C, H, W) tensors")
    return fails


def affine_at_inference(norm: str, options: dict) -> bool | None:
    """Whether the layer in eval mode (after a few training steps) is a fixed affine map per channel, y = a_c x +
    b_c for every example and position: what folding into the layer before needs. Measured on random inputs in
    float64 (least squares per channel); None for a layer that fails there."""
    factory = Norm(norm, **options)
    shape = (2 * factory.ghost_batch or 6, 8, 3, 3)  # ghost norms: two ghost batches
    try:
        layer = factory(8, 2).double().train()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for _ in range(3):
                layer(torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1)
            layer.eval()
            x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1
            y = layer(x)
    except Exception:  # noqa: BLE001 - a layer that fails on maps is judged on the nets' own checks
        return None
    xs, ys = x.transpose(0, 1).reshape(8, -1), y.transpose(0, 1).reshape(8, -1)
    design = torch.stack([xs, torch.ones_like(xs)], dim=2)  # (C, M, 2)
    coef = torch.linalg.lstsq(design, ys.unsqueeze(2)).solution
    residual = (design @ coef).squeeze(2) - ys
    return bool(residual.abs().max() <= 1e-9 * (1 + ys.abs().max()))


def running_stats(norm: str, options: dict) -> bool:
    """Whether the layer is a torch `_BatchNorm` with running statistics: what the fold probe folds and precise BN
    recalibrates (bnrepro/inference.py)."""
    factory = Norm(norm, **options)
    if not factory.enabled:
        return False
    layer = factory(8, 1)
    return isinstance(layer, _BatchNorm) and layer.running_mean is not None


def check_net(cfg) -> str | None:
    """Why a property's net cannot take the norm (None if it can): the config checked at the door, the model built
    on the run's data, and one training step on a batch of 2 of its examples. ConfigError's line (a fully connected
    net with IN, groups that do not divide a width) or the layer's own failure, in one line."""
    from bnrepro import door
    from bnrepro.data import load_data
    from bnrepro.models import build_model

    try:
        settings = door.checked(cfg)
        data = load_data(settings.data)
        model = build_model(settings.model, data.in_shape, data.num_classes).train()
        validate_batch(model, settings.trainer.batch_size)
        n = max(2, settings.model.ghost_batch)  # ghost norms: one ghost batch
        x, y = next(iter(data.eval_batches("train", n, 0, 1, limit=n, seed=0)))
        nn.functional.cross_entropy(model(x), y).backward()
    except ConfigError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - the layer's own failure on this net, in one line
        return f"fails on this net: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None
