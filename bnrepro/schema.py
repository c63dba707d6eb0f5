"""Every config key, declared once: its type, its default and what it means. Checked at the door.

The models below are the config's single source. `register()` puts their defaults in Hydra's ConfigStore as
the base of the top level and of each config group (`schema/train`, `schema/model`, ...; `trainer/default` and
`optim/sgd`, the only options of theirs), so a YAML file under configs/ holds only what its option, scale or claim
changes. A key that one option of its group reads (data.crop_size, model.depth, schedule.gamma) is typed here
with the default None, "this option has no such key": its value lives in the file of the option that reads it.
A run's identity hashes a null key as an absent one (bnrepro/identity.py), so a new key changes no run's hash.

Each group is a pydantic model with `extra="forbid"`, so a typo (`+optim.lrr=0.1`, `+foo=1`) is an unknown key,
not a silently ignored one. Types are strict (issue 19): a string, even "0.1" or what ${oc.env:...} gives, is not
a number, nor is a bool, and a float is not an int (an int is fine where a float is declared); every number
anywhere in the tree must be finite and fit float32, the precision the model trains in. `validate(cfg)` raises
ConfigError with one line that names the key, the value and the fix. What needs the registries of norms and
probes (a norm's name and options, which norms need batches of two) is checked beside it, by bnrepro.door.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Literal, Optional, Union

from omegaconf import MISSING, DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

from bnrepro.errors import ConfigError

FINAL_EVALS = ("ema", "precise", "precise_alg2", "batch")

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


class Group(BaseModel):
    # strict: no str -> number, float -> int or int/str -> bool coercion (an int still passes for a float)
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data):
        _check_numbers(data)
        return data

    @classmethod
    def node(cls) -> dict:
        """The defaults as a config node: a required key is ??? (Hydra's missing value), a nested group is left
        to its own config group."""
        out = {}
        for name, field in cls.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue
            out[name] = MISSING if field.default is PydanticUndefined else field.get_default(call_default_factory=True)
        return out


class Data(Group):
    name: Literal["digits", "mnist", "cifar10", "cifar100", "imagenet", "mnist1d"]
    root: Optional[str] = None                   # where the dataset's files are (digits, mnist1d: none)
    download: bool = False                       # fetch missing files (mnist, cifar: torchvision's download)
    augment: bool = False                        # training-time augmentation (cifar: crop + flip; imagenet: crop)
    val_split: float = Field(0.0, ge=0, lt=1)    # a stratified validation fraction held out of training: every
                                                 # selection (steps to target, best LR) reads it, never the test set
    split_seed: Optional[int] = None             # the seed of that validation split (and digits' test split)
    train_examples: Optional[int] = Field(None, ge=10)  # train on a stratified subset of about this many of the
                                                 # examples left after the validation split (drawn with split_seed:
                                                 # the same subset in every arm; C5's overfitting regime); null: all
    test_fraction: Optional[float] = Field(None, gt=0, lt=1)  # digits: its test share (no official split)
    crop_size: Optional[int] = Field(None, ge=1)      # imagenet: the training and evaluation crop
    resize_size: Optional[int] = Field(None, ge=1)    # imagenet: the evaluation resize before the center crop
    workers: Union[Auto, int] = "auto"           # DataLoader workers per process (streamed data: imagenet)
    num_samples: Optional[int] = Field(None, ge=20)   # mnist1d: generated examples (a multiple of 10)
    train_split: Optional[float] = Field(None, gt=0, lt=1)  # mnist1d: the generator's train fraction
    seed: Optional[int] = None                   # mnist1d: the generator's seed (another seed, another dataset)
    cache_dir: Optional[str] = None              # mnist1d: where the generated tensors are cached

    @model_validator(mode="after")
    def _workers(self):
        if isinstance(self.workers, int) and self.workers < 0:
            raise ValueError("workers: set a number of DataLoader workers >= 0, or auto")
        return self


class NormOptions(Group):
    """The norm keys of every model family, read by bnrepro.norm.Norm. Each norm registers which of them it reads
    (bnrepro/norm/<family>.py), and a run's hash covers its own norm's options only."""
    norm: str = "bn"        # a registered norm (bn | none | gn | ln | in | ghost_bn | brn | noisy_bn | frozen_bn |
                            # wn | mean_only_bn | wn_mean_only_bn | frn | evonorm_s0 | evonorm_b0 | rmsnorm; README)
                            # or your own class's dotted path
    norm_groups: int = Field(32, ge=1)     # gn, evonorm_s0: groups per layer (GN paper: 32); must divide every layer width
    ghost_batch: int = Field(0, ge=0)      # ghost_bn, brn: examples per normalization batch (0: the whole batch)
    brn_rmax: float = Field(3.0, ge=1)     # brn: final r_max (Batch Renorm paper: 3)
    brn_dmax: float = Field(5.0, ge=0)     # brn: final d_max (Batch Renorm paper: 5)
    brn_hold: int = Field(5000, ge=0)      # brn: plain BN (r_max 1, d_max 0) for the first 5k steps (sec. 4.1),
    brn_rmax_at: int = Field(40000, ge=0)  # brn: then r_max ramps linearly to brn_rmax, reached at step 40k,
    brn_dmax_at: int = Field(25000, ge=0)  # brn: and d_max to brn_dmax, reached at step 25k
    brn_warmup: Optional[int] = Field(None, ge=0)  # brn: null: the steps above; N: that schedule scaled to end at N
    wn_init: Literal["data", "norm"] = "data"  # wn, wn_mean_only_bn: g (and the bias) set on a training batch so
                                             # each pre-activation has mean 0, variance 1 (Salimans & Kingma sec. 3),
                                             # or "norm": g = ||v||, the plain net's own function
    noise_mean: float = Field(0.5, ge=0)   # noisy_bn: per-step shift means drawn from U(-noise_mean, noise_mean)
    noise_std: float = Field(0.5, ge=0)    # noisy_bn: per-step noise spreads drawn from U(0, noise_std)
    norm_momentum: float = Field(0.1, gt=0, le=1)  # running statistics: new = (1 - momentum) old + momentum batch
    norm_eps: float = Field(1e-5, gt=0)    # added to the variance before the square root
    norm_sync: bool = False                # under torchrun: BN statistics over the global batch (SyncBatchNorm)
    norm_position: Optional[Literal["pre", "post"]] = None  # where each norm sits (C17): pre = on the linear or
                                           # conv output, before the nonlinearity (the paper's; null means pre),
                                           # post = after the nonlinearity; a norm no nonlinearity follows stays


class Model(NormOptions):
    """An architecture (configs/model/<name>.yaml sets its own keys) and its norm."""
    name: Literal["mlp", "resnet_cifar", "resnet", "inception_bn", "inception"]
    act: Literal["relu", "sigmoid", "tanh"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)      # dropout before the classifier (mlp: after each hidden layer)
    hidden: Optional[list[int]] = None           # mlp: hidden widths
    init: Optional[str] = None                   # mlp: normal | xavier | kaiming (C3: each arm's fair init)
    init_std: Optional[float] = Field(None, gt=0)     # mlp, init=normal: the weights' standard deviation
    init_scale: Optional[float] = Field(None, gt=0)   # multiplier on the family's init (conv nets: Kaiming, C6; mlp: C17)
    depth: Optional[int] = Field(None, ge=1)     # resnet_cifar: 6n+2 (checked by the model); mlp: hidden layers (C12)
    residual: Optional[bool] = None              # C12: skip connections on/off (mlp: off, resnet_cifar: on if unset)
    width: Optional[int] = Field(None, ge=1)     # resnet_cifar: channels of the first stage
    zero_init_residual: Optional[bool] = None    # resnets: start each residual branch at zero
    arch: Optional[Literal["resnet18", "resnet50"]] = None  # resnet: timm's architecture
    stem: Optional[Literal["auto", "imagenet", "cifar", "digits"]] = None  # inception: the stem for the input size
    width_mult: Optional[float] = Field(None, gt=0)   # inception: multiplier on every layer width
    lrn: Optional[bool] = None                   # inception: Local Response Normalization in the stem

    @model_validator(mode="after")
    def _hidden(self):
        if self.hidden is not None and any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden}: every hidden width must be >= 1")
        return self


class Optim(Group):
    """SGD with momentum. The paper names no optimizer for MNIST; its ImageNet runs use SGD with momentum."""
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)                 # base rate; chosen on digits for the Fig. 1 nets (experiment/fig1)
    lr_mult: float = Field(1.0, gt=0)            # the paper's x1 / x5 / x30: effective LR = lr * lr_mult
    scale_lr_by_batch: bool = False              # true: lr is per 256 examples, scaled by batch_size / 256
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    wd_exempt_norm_bias: bool = False            # true: norm scales/shifts and biases get no weight decay
    fixed_norm: Optional[Union[float, list[float]]] = None  # C14: after every step, each layer a scale-invariant BN
                                                 # follows is rescaled to this multiple of its norm at initialization
                                                 # (one value, or one per such layer in module order), so its
                                                 # effective LR lr/||w||^2 stays fixed (Hoffer et al. 2018); null: off

    @model_validator(mode="after")
    def _fixed_norm(self):
        values = self.fixed_norm if isinstance(self.fixed_norm, list) else [self.fixed_norm or 1.0]
        if not values or any(not v > 0 for v in values):
            raise ValueError(f"fixed_norm={self.fixed_norm}: set a positive multiple of the initial norm (or one per "
                             "layer), or null")
        return self
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class Schedule(Group):
    """The learning-rate schedule (configs/schedule/<name>.yaml sets its own keys), after any linear warmup."""
    name: Literal["constant", "step", "exponential", "cosine"]
    warmup_frac: float = Field(0.0, ge=0, lt=1)  # linear warmup over this fraction of the run,
    warmup_start_factor: float = Field(0.01, gt=0, le=1)  # from this factor x the rate
    milestones_frac: Optional[list[float]] = None    # step: the rate x gamma at each (fractions of max_steps)
    gamma: Optional[float] = Field(None, gt=0)       # step
    decay_rate: Optional[float] = Field(None, gt=0)  # exponential: lr * decay_rate ** (step / period)
    decay_every_frac: Optional[float] = Field(None, gt=0)  # exponential: period as a fraction of max_steps,
    decay_every_steps: Optional[int] = Field(None, ge=1)   # or in steps (the imagenet scale)
    decay_speedup: Optional[float] = Field(None, gt=0)     # exponential: period / this (BN-x5: 6x faster decay)
    staircase: Optional[bool] = None                 # exponential: drop at each period instead of smoothly
    min_lr_frac: Optional[float] = Field(None, ge=0, le=1)  # cosine: the final rate as a fraction of the rate


class Trainer(Group):
    max_steps: int = Field(50000, ge=1)
    batch_size: int = Field(60, ge=1)            # the paper's MNIST mini-batch; the global batch, split over DDP
    eval_every: int = Field(500, ge=0)           # steps between evaluations and metrics rows; 0: eval_at only
    eval_at: Any = None                          # extra evaluation steps: a list ([10, 20, 50]) or log (10, 20, 50,
                                                 # 100, 200, 500, ...)
    score_last_k: int = Field(3, ge=1)           # summary.json's score: mean test accuracy over the last k evals
    device: str = "auto"                         # auto picks cuda when available
    train_eval_examples: int = Field(1000, ge=1)  # a fixed training subset evaluated at each eval (train-test gap)
    probe_unit: int = Field(0, ge=0)             # the unit Fig. 1 draws (every unit is recorded, judged)
    probes: list[str] = ["percentiles"]          # measurements beside training (bnrepro/probes/)
    final_eval: list[Literal[FINAL_EVALS]] = ["ema"]  # inference variants at the end: ema | precise | precise_alg2 |
                                                 # batch (C8)
    precise_bn_examples: int = Field(1000, ge=1)  # training examples precise BN estimates the population with
    progress: Literal["auto", "bar", "log", "none"] = "auto"  # auto: a bar on a terminal, log lines otherwise
    progress_every_s: float = Field(15.0, gt=0)  # log lines: at most one per evaluation and one per this many s
    ckpt_every: int = Field(1000, ge=1)          # steps between checkpoints (also at the end, a new best, SIGTERM)
    threads: Union[Auto, int] = "auto"           # torch threads; auto: this job's cores shared among the jobs
                                                 # beside it. The numbers depend on it: scale=cpu fixes 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    channels_last: Union[Auto, bool] = "auto"    # auto: NHWC memory layout for conv nets on GPU
    compile: bool = False                        # torch.compile the training step's model
    overwrite: bool = False                      # true: a run dir holding another config's run is moved aside
    wait_for_lock: bool = False                  # wait for another process's lock on the run dir instead of exiting 2

    @model_validator(mode="after")
    def _ranges(self):
        steps = self.eval_at
        if not (steps is None or steps == "log" or isinstance(steps, list) and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in steps)):
            raise ValueError(f"eval_at={steps}: set a list of positive step numbers, or log")
        if isinstance(self.threads, int) and self.threads < 1:
            raise ValueError(f"threads={self.threads}: set a torch thread count >= 1, or auto")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        return self


class Logger(Group):
    name: Literal["wandb", "none"]               # wandb: W&B (offline unless logged in) | none: run-dir files only
    project: str = "bnrepro"
    entity: Optional[str] = None


class TrainConfig(Group):
    seed: int = Field(0, ge=0)
    name: str = "default"                        # experiment name: the W&B group and the folder of its runs
    claim: Optional[str] = None                  # the claim id (C1..C15) an experiment tests; null for ad-hoc runs
    targets: list[float] = [0.8, 0.9, 0.95]      # summary.json: the first eval step reaching each test accuracy
    scale_name: str = "cpu"                      # set by configs/scale/<scale>.yaml
    seeds: Optional[str] = None                  # the scale's confirmation seeds, every sweep's seed axis
                                                 # ("2000,...": ranges in bnrepro/report/design.py)
    pilot_seeds: Optional[str] = None            # the scale's pilot seeds (`make pilot`: seeds=${pilot_seeds})
    datasets: Optional[str] = None               # the scale's dataset axis, every sweep's `data` ("digits,mnist1d")
    claims: dict[str, Any] = {}                  # the scale's role choices (configs/claims/net, ...: group choices)
    base_lr: Optional[float] = Field(None, gt=0)  # the scale's no-BN base rate that C2/C10 multiply
    steps_by_data: Optional[dict[str, int]] = None  # cpu: a claim's step budget per embedded dataset (data.name)
    claim_params: dict[str, Any] = {}            # the claim's own keys (C1's ladder rung, C7's protocol, ...), set by
                                                 # its configs, checked by its module's PARAMS (bnrepro/claims/)
    data: Data
    model: Model
    optim: Optim
    schedule: Schedule
    trainer: Trainer
    logger: Logger

    @model_validator(mode="after")
    def _targets(self):
        if any(not 0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets={self.targets}: accuracies in (0, 1]")
        return self


def register() -> None:
    """Put the defaults in Hydra's ConfigStore, under configs' group `schema/`: the top level (`schema/train`,
    which configs/train.yaml names first) and each group's base (`schema/model`, ...: each YAML option of the group
    names it first in its defaults list; named as configs, not group options, so they are no choice of
    model=... or data=...), and the only options of trainer and optim (`trainer/default`, `optim/sgd`)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, model in (("train", TrainConfig), ("data", Data), ("model", Model), ("schedule", Schedule),
                        ("logger", Logger)):
        cs.store(group="schema", name=name, node=model.node())
    cs.store(group="trainer", name="default", node=Trainer.node())
    cs.store(group="optim", name="sgd", node=Optim.node())


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


def error_message(err: dict, raw: dict | None = None, schema: type[BaseModel] | None = None, at: tuple = ()) -> str:
    """One line for a validation error of `schema` (TrainConfig if None) checked at key prefix `at`."""
    loc = _key(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        valid = _fields(schema or TrainConfig, loc[len(at):-1])
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


def validate(cfg: DictConfig | dict, schema: type[Group] = TrainConfig, at: tuple = ()) -> Group:
    """The checked config, or ConfigError with one line for the first bad value. Given a DictConfig, the
    message can name an interpolation that gave a bad value. `schema` and `at` check a part of a config (the
    norm options of bnrepro.norm.Norm: NormOptions at ("model",)), named in the message by its full keys."""
    raw = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else None
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    try:
        return schema.model_validate(tree)
    except ValidationError as e:
        errors = [{**err, "loc": (*at, *err["loc"])} for err in e.errors()]
        for key in reversed(at if raw is not None else ()):  # the raw text under the same full keys as the errors
            raw = {key: raw}
        raise ConfigError(error_message(_first(errors), raw, schema, at)) from None
