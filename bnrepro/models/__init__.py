"""Model registry: `build_model(cfg.model, in_shape, num_classes)` builds any family with any norm."""
from __future__ import annotations

import inspect

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bnrepro import CONFIGS, ConfigError
from bnrepro.norm import Norm
from bnrepro.schema import Model, NormOptions

# config keys that only name or annotate the model (the norm's keys, bnrepro.schema.NormOptions, go to Norm)
META_KEYS = ("_target_", "name")

MODELS = {
    "mlp": "bnrepro.models.mlp.MLP",
    "resnet_cifar": "bnrepro.models.resnet_cifar.CifarResNet",
    "resnet": "bnrepro.models.resnet.ResNet",
    "inception_bn": "bnrepro.models.inception.BNInception",
    "inception": "bnrepro.models.inception.GoogLeNet",
}


def model_config(name: str) -> dict:
    """configs/model/<name>.yaml as a run's `model` composes it without overrides: the family's own values over
    the defaults of every model key (bnrepro.schema.Model). For tools that build a model without Hydra;
    tests/test_models.py checks it against Hydra's composition."""
    own = OmegaConf.load(CONFIGS / "model" / f"{name}.yaml")
    own.pop("defaults")
    return OmegaConf.to_container(OmegaConf.merge(Model.node(), own))


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model in channels_last layout (the GPU speed path), BN-Inception's padded average pools through NCHW
    only where the device's own channels_last kernel is wrong (inception.AvgPool2dNCHW)."""
    from bnrepro.models.inception import AvgPool2dNCHW, channels_last_avg_pool_is_right

    model = model.to(memory_format=torch.channels_last)
    pools = [m for m in model.modules() if isinstance(m, AvgPool2dNCHW)]
    if pools:
        right = channels_last_avg_pool_is_right(next(model.parameters()).device.type)
        for pool in pools:
            pool.via_nchw = not right
    return model


def build_model(cfg: DictConfig | dict, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    kw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = kw.get("name")
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}': choose model=<one of {', '.join(MODELS)}>")
    norm = Norm.of(kw)
    # the model's own keys: a null one is a key its family does not have (bnrepro/schema.py)
    kw = {k: v for k, v in kw.items() if k not in NormOptions.model_fields and k not in META_KEYS and v is not None}
    cls = get_class(MODELS[name])
    unknown = sorted(set(kw) - set(inspect.signature(cls).parameters))
    if unknown:
        raise ConfigError(f"model={name} has no option {', '.join('model.' + k for k in unknown)}: "
                          f"remove it or check its spelling in configs/model/{name}.yaml")
    # norm.finish: wn and wn_mean_only_bn reparameterize the layer before each norm, after the model's own init
    return norm.finish(cls(in_shape=tuple(in_shape), num_classes=num_classes, norm=norm, **kw))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
