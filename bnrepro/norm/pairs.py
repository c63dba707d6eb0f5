"""Where the norms sit in a model: the conv or linear layer that feeds each norm layer (weight normalization
reparameterizes it; the C13/C14 probes measure it)."""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

FEEDING = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers a norm can follow


def norm_inputs(model: nn.Module, is_norm) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, layer, norm) for every module `is_norm` accepts and the conv or linear layer that feeds it: the
    last such layer registered before it, which must have the norm's channels. Every model family registers a
    layer just before its norm (nn.Sequential(conv, norm), timm's conv1/bn1); tests/test_decouple.py checks the
    pairs against the data flow of a forward pass for each family."""
    pairs, last = [], None
    for name, m in model.named_modules():
        if isinstance(m, FEEDING):
            last = (name, m)
        elif is_norm(m):
            if last is None:
                raise ValueError(f"{type(m).__name__} at {name or 'the top'} has no conv or linear layer before it")
            layer_name, layer = last
            out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            if out != m.num_features:
                raise ValueError(f"{name} normalizes {m.num_features} channels but {layer_name}, the layer before "
                                 f"it, has {out}")
            pairs.append((layer_name, layer, m))
            last = None
    return pairs


def scale_invariant(m: nn.Module) -> bool:
    """A norm after which the layer before is scale-invariant in training: BN((aW)u) = BN(Wu) (eps aside). A BN
    class that is not says so with `scale_invariant = False`: brn (its r and d use the running statistics, which
    do not scale), frozen_bn (no batch statistics), mean_only_bn (no division)."""
    return isinstance(m, _BatchNorm) and getattr(m, "scale_invariant", True)
