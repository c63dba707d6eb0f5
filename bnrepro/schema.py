"""Validation at the door: one schema for every user-facing config value, checked before anything is written.

Each config group is a pydantic model with `extra="forbid"`, so a typo (`+optim.lrr=0.1`, `+foo=1`) is an
unknown key, not a silently ignored one. Keys that only some group options use (model.depth for resnet_cifar,
data.crop_size for imagenet) are declared optional. `validate(cfg)` raises ConfigError with one line that
names the key, the value and the fix.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Optional, Union

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bnrepro import ConfigError

NORMS = ("bn", "none", "gn", "ln", "in", "ghost_bn", "brn", "noisy_bn", "frozen_bn", "wn", "mean_only_bn",
         "wn_mean_only_bn")
GHOST_NORMS = ("ghost_bn", "brn")  # the norms that read model.ghost_batch
# the norms that normalize with training-batch statistics
BATCH_NORMS = ("bn", "ghost_bn", "brn", "noisy_bn", "mean_only_bn", "wn_mean_only_bn")
FINAL_EVALS = ("ema", "precise", "precise_alg2", "batch")

PosFloat = Field(gt=0)
Auto = Literal["auto"]


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Data(Group):
    name: Literal["digits", "mnist", "cifar10", "cifar100", "imagenet", "mnist1d"]
    root: Optional[str] = None
    download: bool = False
    augment: bool = False
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    val_split: float = Field(0.0, ge=0, lt=1)   # score branch: a held-out validation fraction
    crop_size: int = Field(224, ge=1)
    resize_size: int = Field(256, ge=1)
    workers: Union[Auto, int] = "auto"
    num_samples: int = Field(20000, ge=20)       # mnist1d: generated examples (a multiple of 10)
    train_split: float = Field(0.8, gt=0, lt=1)  # mnist1d: the generator's train fraction
    seed: int = 42                               # mnist1d: the generator's seed (another seed, another dataset)
    cache_dir: Optional[str] = None              # mnist1d: where the generated tensors are cached

    @model_validator(mode="after")
    def _workers(self):
        if isinstance(self.workers, int) and self.workers < 0:
            raise ValueError("workers: set a number of DataLoader workers >= 0, or auto")
        return self


class Model(Group):
    name: Literal["mlp", "resnet_cifar", "resnet", "inception_bn", "inception"]
    norm: Literal[NORMS]
    act: Literal["relu", "sigmoid", "tanh"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    init: Optional[str] = None                   # score branch: each arm's own fair init (xavier, kaiming...)
    init_std: float = Field(0.1, gt=0)
    init_scale: float = Field(1.0, gt=0)
    hidden: list[int] = [100, 100, 100]
    depth: int = Field(20, ge=1)                 # resnet_cifar: 6n+2 (checked by the model); mlp: hidden layers (C12)
    residual: Optional[bool] = None              # C12: skip connections on/off (mlp: off, resnet_cifar: on if unset)
    width: int = Field(16, ge=1)
    arch: Literal["resnet18", "resnet50"] = "resnet50"
    stem: Literal["auto", "imagenet", "cifar", "digits"] = "auto"
    width_mult: float = Field(1.0, gt=0)
    lrn: bool = False
    zero_init_residual: bool = False
    norm_groups: int = Field(1, ge=1)
    ghost_batch: int = Field(0, ge=0)
    brn_rmax: float = Field(3.0, ge=1)
    brn_dmax: float = Field(5.0, ge=0)
    brn_warmup: Optional[int] = Field(None, ge=0)  # null: the paper's absolute schedule; N: it scaled to end at N
    brn_hold: int = Field(5000, ge=0)
    brn_rmax_at: int = Field(40000, ge=0)
    brn_dmax_at: int = Field(25000, ge=0)
    noise_mean: float = Field(0.5, ge=0)
    noise_std: float = Field(0.5, ge=0)
    norm_momentum: float = Field(0.1, gt=0, le=1)
    norm_eps: float = Field(1e-5, gt=0)
    norm_sync: bool = False

    @model_validator(mode="after")
    def _ghost(self):
        if self.ghost_batch and self.norm not in GHOST_NORMS:
            raise ValueError(f"ghost_batch={self.ghost_batch} is read only by norm {' or '.join(GHOST_NORMS)}, "
                             f"not norm={self.norm}: set model.norm=ghost_bn or model.ghost_batch=0")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden}: every hidden width must be >= 1")
        return self


class Optim(Group):
    name: Literal["sgd"]
    lr: float = PosFloat
    lr_mult: float = PosFloat
    scale_lr_by_batch: bool = False
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    wd_exempt_norm_bias: bool = False
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class Schedule(Group):
    name: Literal["constant", "step", "exponential", "cosine"]
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    warmup_start_factor: float = Field(0.01, gt=0, le=1)
    milestones_frac: list[float] = [0.5, 0.75]
    gamma: float = Field(0.1, gt=0)
    decay_rate: float = Field(0.96, gt=0)
    decay_every_frac: float = Field(0.05, gt=0)
    decay_every_steps: Optional[int] = Field(None, ge=1)  # an absolute decay period (imagenet scale)
    decay_speedup: float = Field(1.0, gt=0)
    staircase: bool = False
    min_lr_frac: float = Field(0.0, ge=0, le=1)


class Trainer(Group):
    max_steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    eval_every: int = Field(ge=0)                # 0: only the steps of eval_at
    eval_at: Any = None                          # explicit evaluation steps, or "log" (10, 20, 50, 100, ...)
    score_last_k: int = Field(3, ge=1)           # score branch: score = mean of the last k evaluations
    device: str = "auto"
    train_eval_examples: int = Field(1000, ge=1)
    probe_unit: int = Field(0, ge=0)
    probes: list[str] = ["percentiles"]          # bnrepro/probes/: the measurements taken beside training
    final_eval: list[Literal[FINAL_EVALS]] = ["ema"]
    precise_bn_examples: int = Field(1000, ge=1)
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    progress_every_s: float = Field(15.0, gt=0)
    ckpt_every: int = Field(1000, ge=1)
    threads: Union[Auto, int] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: Union[Auto, bool] = "auto"
    compile: bool = False
    overwrite: bool = False

    @model_validator(mode="after")
    def _ranges(self):
        steps = self.eval_at
        if not (steps is None or steps == "log" or isinstance(steps, list) and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in steps)):
            raise ValueError(f"eval_at={steps}: set a list of positive step numbers, or log")
        from bnrepro.probes import REGISTRY
        unknown = [name for name in self.probes if name not in REGISTRY]
        if unknown:
            raise ValueError(f"probes={self.probes}: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(sorted(REGISTRY))}")
        if isinstance(self.threads, int) and self.threads < 1:
            raise ValueError(f"threads={self.threads}: set a torch thread count >= 1, or auto")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        return self


class Logger(Group):
    name: Literal["wandb", "none"]
    project: str = "bnrepro"
    entity: Optional[str] = None


class TrainConfig(Group):
    seed: int = Field(ge=0)
    name: str
    claim: Optional[str] = None
    targets: list[float] = []
    scale_name: str = "cpu"
    variant: Optional[str] = None                # C1's ladder rung
    c8_setting: Optional[str] = None             # score branch: C8's setting label
    c7_protocol: Optional[str] = None            # C7 arm's protocol: gpu8 (the GN paper's), real (cpu) or ghost
    c7_real: Optional[dict[str, float]] = None   # C7 real-batch protocol: examples per run, LR per 256 examples
    base_lr: Optional[float] = Field(None, gt=0)  # the scale's no-BN base rate that C2/C10 multiply
    seeds: Optional[str] = None                  # the scale's seed axis for sweeps ("0,1,2,3,4")
    c14_weight_decays: Optional[str] = None      # C14: the weight decays its sweep compares ("0,0.005")
    steps_by_data: Optional[dict[str, int]] = None  # cpu: a claim's step budget per embedded dataset (data.name)
    c10_budget: Optional[dict[str, int]] = None  # C10: steps at x1 and the cap of the 1/LR-scaled budget
    c3_fair_init: Optional[dict[str, dict[str, str]]] = None  # C3: each (act, norm) arm's init
    c12_train_steps: Optional[int] = Field(None, ge=1)  # C12: the 100-layer MLP's training steps after the probe
    c15_model: Optional[dict[str, Any]] = None   # C15: each family's size at the scale (depth, width, arch, width_mult)
    claims: dict[str, Any] = {}                  # the scale's choices for each claim's family (group choices)
    ladder_weight_decay: Optional[dict[str, float]] = None
    data: Data
    model: Model
    optim: Optim
    schedule: Schedule
    trainer: Trainer
    logger: Logger

    @model_validator(mode="after")
    def _batch(self):
        g, b = self.model.ghost_batch, self.trainer.batch_size
        if self.model.norm in BATCH_NORMS and (g or b) < 2:
            raise ValueError(f"{'model.ghost_batch' if g else 'trainer.batch_size'}={g or b} leaves one example "
                             f"per batch for model.norm={self.model.norm} to normalize over: set "
                             "trainer.batch_size >= 2 (and model.ghost_batch >= 2), or model.norm=none|gn|ln")
        if g and b % g:
            raise ValueError(f"model.ghost_batch={g} does not divide trainer.batch_size={b}: pick a ghost size "
                             "that divides the batch")
        if any(not 0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets={self.targets}: accuracies in (0, 1]")
        return self


def _fields(model: type[BaseModel], path: tuple) -> list[str]:
    for part in path:
        ann = model.model_fields.get(str(part))
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            break
        model = ann.annotation
    return sorted(model.model_fields)


def _message(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if not isinstance(p, int))
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        valid = _fields(TrainConfig, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}? " if close else ""
        where = ".".join(map(str, loc[:-1])) or "the top level"
        return f"unknown key {key}: {hint}remove it or fix its spelling; valid keys in {where}: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{key} is missing: set it ({key}=...)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":  # our own validators: the message names key and fix
        return f"{key + '.' if key else ''}{msg}"
    value = err.get("input")
    return f"{key}={value!r}: {msg[0].lower() + msg[1:]}; fix {key} on the command line or in its config file"


def validate(cfg: DictConfig | dict) -> TrainConfig:
    """The checked config, or ConfigError with one line for the first bad value."""
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_message(e.errors()[0])) from None
