"""Validation at the door: one schema for every user-facing config value, checked before anything is written.

Each config group is a pydantic model with `extra="forbid"`, so a typo (`+optim.lrr=0.1`, `+foo=1`) is an
unknown key, not a silently ignored one. Keys that only some group options use (model.depth for resnet_cifar,
data.crop_size for imagenet) are declared optional. Types are strict (issue 19): a string, even "0.1" or what
${oc.env:...} gives, is not a number, nor is a bool, and a float is not an int (an int is fine where a float is
declared); every number anywhere in the tree must be finite and fit float32, the precision the model trains in.
Such values used to pass and fail late (a TypeError, a float overflow) or train to a "diverged" result.
`validate(cfg)` raises ConfigError with one line that names the key, the value and the fix.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Literal, Optional, Union

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bnrepro import ConfigError

FINAL_EVALS = ("ema", "precise", "precise_alg2", "batch")

PosFloat = Field(gt=0)
Auto = Literal["auto"]


FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max: a larger LR overflows in the optimizer


def _check_numbers(value, path: str = "") -> None:
    """ValueError for the first inf, nan or beyond-float32 number in a (nested) value, named by its dotted path.
    A walk rather than a field type, so that it also covers the free-form fields (eval_at, claims, c15_model)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}={value}: set a finite number (inf and nan are refused everywhere)")
        if abs(value) > FLOAT32_MAX:  # an int too: it becomes a float32 in the model (an LR, a scale)
            raise ValueError(f"{path}={value} does not fit float32 (|x| <= {FLOAT32_MAX!r}), the precision the "
                             f"model trains in: set a smaller {path}")


def find_norm(name):
    """The registered norm `name` (bnrepro/norm/registry.py), or None. The norms import torch: lazily, on first
    use, as the door checks a config before anything else needs torch."""
    from bnrepro.norm import find

    return find(name)


class Group(BaseModel):
    # strict: no str -> number, float -> int or int/str -> bool coercion (an int still passes for a float)
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data):
        _check_numbers(data)
        return data


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
    norm: str                                    # a registered norm (bnrepro/norm/) or a dotted path: _norm checks it
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
    def _norm(self):
        spec = find_norm(self.norm)
        if spec is None:
            from bnrepro.norm import unknown

            raise ValueError(unknown(self.norm))
        if self.ghost_batch and not spec.ghost:
            from bnrepro.norm import REGISTRY

            ghost = " or ".join(name for name, s in REGISTRY.items() if s.ghost)
            raise ValueError(f"ghost_batch={self.ghost_batch} is read only by norm {ghost}, "
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
    wait_for_lock: bool = False                  # wait for another process's lock on the run dir instead of exiting 2

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
        if find_norm(self.model.norm).batch_stats and (g or b) < 2:
            raise ValueError(f"{'model.ghost_batch' if g else 'trainer.batch_size'}={g or b} leaves one example "
                             f"per batch for model.norm={self.model.norm} to normalize over: set "
                             "trainer.batch_size >= 2 (and model.ghost_batch >= 2), or model.norm=none|gn|ln")
        if g and b % g:
            raise ValueError(f"model.ghost_batch={g} does not divide trainer.batch_size={b}: pick a ghost size "
                             "that divides the batch")
        if any(not 0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets={self.targets}: accuracies in (0, 1]")
        from bnrepro.norm.ghost import check_brn_schedule  # declared with the schedule it checks (imports torch: lazily)

        m = self.model  # here, not in Model: the message names its keys in full (model.brn_*), as Norm's does
        check_brn_schedule(m.brn_hold, m.brn_rmax_at, m.brn_dmax_at, m.brn_warmup)
        return self


def _fields(model: type[BaseModel], path: tuple) -> list[str]:
    for part in path:
        ann = model.model_fields.get(str(part))
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            break
        model = ann.annotation
    return sorted(model.model_fields)


NUMBER_TYPES = ("int_type", "float_type")  # strict mode's errors for a value of the wrong type where a number belongs
UNION_TAG = re.compile(r"int|float|bool|str|[\w-]+\[.*\]")  # how pydantic names a Union member in an error's loc


def _key(loc) -> tuple:
    """The config keys of an error's loc: without list indices and Union member tags (data.workers.int)."""
    return tuple(p for p in loc if not isinstance(p, int) and not UNION_TAG.fullmatch(str(p)))


def _raw(raw, loc: tuple):
    """The value at loc in the unresolved config (an interpolation's own text), or None."""
    for part in loc:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(part)
    return raw


def _message(err: dict, raw: dict | None = None) -> str:
    loc = _key(err["loc"])
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
    head = f"{key}={value!r}: {msg[0].lower() + msg[1:]}"
    if err["type"] in NUMBER_TYPES and isinstance(value, str):
        source = _raw(raw, loc)
        via = f"the string that {source} gives" if isinstance(source, str) and "${" in source else ""
        try:
            float(value)
        except ValueError:
            if via:
                return f"{head}, not {via}: set a number"
        else:
            if via:  # ${oc.env:...} always gives a string; oc.decode parses it (quoted: Hydra's grammar nests no ${})
                return (f"{head}, not {via}: write '{key}=\"${{oc.decode:{source}}}\"' on the command line "
                        f"({loc[-1]}: ${{oc.decode:{source}}} in a config file) to read it as a number, or set a "
                        "number")
            return f"{head}, not a string: write {key}={value} without quotes"
    if err["type"] == "int_type" and isinstance(value, float) and value.is_integer():
        return f"{head}: write {key}={int(value)}"  # 1e4 or 100.0 on the command line is a float
    return f"{head}; fix {key} on the command line or in its config file"


def _first(errors: list[dict]) -> dict:
    """The first error, with the other members' errors of a Union field (data.workers: 'auto' or an int)
    merged into one message."""
    first = errors[0]
    if first["type"] in ("value_error", "extra_forbidden", "missing"):
        return first
    same = [e for e in errors if _key(e["loc"]) == _key(first["loc"]) and e["type"] != "value_error"]
    if len(same) < 2:
        return first
    msgs = list(dict.fromkeys(e["msg"] for e in same))
    number = next((e["type"] for e in same if e["type"] in NUMBER_TYPES), first["type"])
    msg = " or ".join([msgs[0], *(m.removeprefix("Input should be ") for m in msgs[1:])])
    return {**first, "type": number, "msg": msg}


def validate(cfg: DictConfig | dict) -> TrainConfig:
    """The checked config, or ConfigError with one line for the first bad value. Given a DictConfig, the
    message can name an interpolation that gave a bad value."""
    raw = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else None
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_message(_first(e.errors()), raw)) from None
