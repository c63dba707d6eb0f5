"""Checks before Hydra writes anything: the command line parses, composes, passes the schema, the files of its
dataset exist (bnrepro.data.check_available), and its output dir can be written. Hydra's own errors (unknown
group option, unknown key, malformed override) become one line that lists the valid choices; the entry point
prints it as `error: ...` and exits 2 with no run dir made.

A sweep's jobs are composed from the command line's sweep values here; the values an experiment file sweeps
(`hydra.sweeper.params`) are checked again in each job before it writes (train.py), which removes the stub
dir Hydra made for a job that fails.
"""
from __future__ import annotations

import itertools
import os
import re
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bnrepro import CONFIGS, ConfigError
from bnrepro.norm import REGISTRY, Norm
from bnrepro.probes import REGISTRY as PROBES
from bnrepro.schema import error_message, validate

MAX_JOBS_CHECKED = 200


def checked(cfg: DictConfig | dict) -> DictConfig:
    """The config as the trainer reads it: every key present with its declared type and default
    (bnrepro/schema.py), or ConfigError with one line for the first bad value. Beside the schema, what needs the
    registries: the norm (a registered name or dotted path, its options consistent: building the Norm checks
    both), the model.ghost_batch only ghost norms read (a divisor of the batch), the two examples per batch a
    batch-statistics norm needs, the probes; and a claim's own keys (claim_params) by the claim's schema."""
    settings = validate(cfg)  # given unresolved: its message can name the ${...} that gave a bad value
    m, t = settings.model, settings.trainer
    spec = Norm.of(m.model_dump()).spec  # ConfigError for a norm that is not one, or its inconsistent options
    if m.ghost_batch and not spec.ghost:
        ghost = " or ".join(name for name, s in REGISTRY.items() if s.ghost)
        raise ConfigError(f"model.ghost_batch={m.ghost_batch} is read only by norm {ghost}, not norm={m.norm}: "
                          "set model.norm=ghost_bn or model.ghost_batch=0")
    g, b = m.ghost_batch, t.batch_size
    if spec.batch_stats and (g or b) < 2:
        raise ConfigError(f"{'model.ghost_batch' if g else 'trainer.batch_size'}={g or b} leaves one example per "
                          f"batch for model.norm={m.norm} to normalize over: set trainer.batch_size >= 2 (and "
                          "model.ghost_batch >= 2), or model.norm=none|gn|ln")
    if g and b % g:
        raise ConfigError(f"model.ghost_batch={g} does not divide trainer.batch_size={b}: pick a ghost size that "
                          "divides the batch")
    dump = settings.model_dump()
    if settings.claim_params:
        dump["claim_params"] = claim_params(settings.claim, settings.claim_params)
    unknown_probes = [name for name in t.probes if name not in PROBES]
    if unknown_probes:
        raise ConfigError(f"trainer.probes={t.probes}: unknown {', '.join(unknown_probes)}; choose from "
                          f"{', '.join(sorted(PROBES))}")
    return OmegaConf.create(dump)


def claim_params(claim: str | None, params: dict) -> dict:
    """The claim's own keys, checked by its module's Params (bnrepro/claims/), with its defaults."""
    from bnrepro.claims import PARAMS  # the claims' modules, with the report's plotting: only for a claim's runs

    schema = PARAMS.get(claim)
    if schema is None:
        owners = ", ".join(PARAMS)
        raise ConfigError(f"claim_params={params} but claim={claim} has no claim_params (the claims that have: "
                          f"{owners}): remove them, or set the claim they belong to")
    return validate(params, schema, at=("claim_params",)).model_dump()


def one_line(text: str) -> str:
    """Hydra's multi-line messages ('Available options in ...:' then one option per line) as one line."""
    out, items = [], []
    text = str(text).split("Config search path:")[0]  # Hydra appends its search path: noise to a user
    for line in (s.strip() for s in text.splitlines()):
        if not line:
            continue
        if line.endswith(":") and not items and out:
            out.append(line[0].lower() + line[1:] + " ")
        elif out and out[-1].endswith(": "):
            items.append(line)
        else:
            if items:
                out[-1] += ", ".join(items)
                items = []
            out.append(line)
    if items:
        out[-1] += ", ".join(items)
    return "; ".join(s.rstrip() for s in out)


def hydra_error(e: Exception) -> ConfigError:
    text = str(e)
    if e.__cause__ is not None and "not in struct" in str(e.__cause__):
        key = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", text)
        if key:
            return ConfigError(error_message({"type": "extra_forbidden", "loc": tuple(key.group(1).split("."))}))
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    options = getattr(e, "options", None)
    if missing and options:
        group, value = missing.groups()
        return ConfigError(f"unknown option {group}={value}: choose {group}=<{'|'.join(options)}>")
    return ConfigError(one_line(re.sub(r"^In '[^']+': ", "", text)) + ": fix the override")


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    # a glob sweep (norm_batch=glob(gpu8_*)) lists the group's options: it needs the loader of the config dir
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    try:
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(f"malformed override: {one_line(e)}") from None
    if not multirun:
        return [overrides]
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    return [list(job) for job in itertools.islice(itertools.product(*choices), MAX_JOBS_CHECKED)]


def writable(path: Path) -> None:
    """ConfigError unless files can be made in path (or, when it does not exist yet, in its nearest parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is a file")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise ConfigError(f"cannot write the output dir {path} ({e.strerror or e}): choose another with "
                          f"hydra.run.dir=... (hydra.sweep.dir=... for -m), or make {probe} writable") from None


def check(argv: list[str]) -> None:
    """Raise ConfigError for a command line that Hydra or the schema would refuse; do nothing for the
    informational flags (--help, --info, --shell-completion) or a config dir of the user's own."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    parser = get_args_parser()

    def refuse(message):
        raise ConfigError(f"cannot parse the command line ({message}): put flags such as -m before the "
                          "overrides; see --help")

    parser.error = refuse
    args = parser.parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_dir or \
            args.config_path or args.config_name or args.experimental_rerun:
        return
    import bnrepro.loop  # noqa: F401 - registers the bnrepro_cores resolver the launcher configs use
    from bnrepro.data import check_available
    from bnrepro.identity import refuse_foreign

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for job in _jobs(args.overrides, args.multirun):
            try:
                cfg = compose(config_name="train", overrides=job, return_hydra_config=True)
            except (HydraException, MissingConfigException, OmegaConfBaseException) as e:
                raise hydra_error(e) from None
            except Exception as e:  # noqa: BLE001 - OmegaConf raises plain errors for some malformed overrides
                raise ConfigError(f"cannot compose the config with {' '.join(job)}: {type(e).__name__}: "
                                  f"{one_line(e)}") from None
            job_cfg = cfg_without_hydra(cfg)
            try:
                checked(job_cfg)
            except OmegaConfBaseException as e:
                raise ConfigError(f"cannot resolve the config: {one_line(e)}") from None
            if args.cfg is None:  # --cfg only prints the config: it needs no dataset and writes no dir
                check_available(job_cfg.data)
                out = _output_dir(cfg, args.multirun)
                if out is not None:
                    writable(out)
                    if not args.multirun:  # a sweep's jobs get dirs of their own, checked in train()
                        refuse_foreign(out)


def cfg_without_hydra(cfg) -> DictConfig:
    """The job's config as the task function gets it: without the hydra node, interpolations unresolved."""
    c = OmegaConf.to_container(cfg, resolve=False)
    c.pop("hydra", None)
    return OmegaConf.create(c)


def _output_dir(cfg, multirun: bool) -> Path | None:
    from hydra.core.utils import setup_globals

    setup_globals()  # the ${now:...} resolver
    try:
        return Path(str(OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")))
    except Exception:  # noqa: BLE001 - a dir that needs runtime values: Hydra will say so itself
        return None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
