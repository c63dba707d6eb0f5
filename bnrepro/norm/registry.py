"""The norm registry: every normalization layer is registered once, with all that the rest of bnrepro needs to
know about it, and found by its name (`model.norm=...`).

A norm is a builder, `build(norm, channels, dim) -> nn.Module`, registered with `@register_norm(name, ...)` in a
file of its family (bnrepro/norm/*.py, found, not listed). From the registration come the factory
(bnrepro.norm.Norm), the door's checks (bnrepro/schema.py: the names, which norms need two examples per batch,
which read model.ghost_batch), the run identity (bnrepro/identity.py hashes only the chosen norm's options), and
the report's labels and colours (bnrepro/report/style.py, judging.label).

A user's own norm needs no edit here: `model.norm=mypkg.norms.MyNorm` names an nn.Module class (built as
`MyNorm(channels)`) or a builder registered with `register_norm`, by its dotted path; or a package declares the
entry point group `bnrepro.norms` (`[project.entry-points."bnrepro.norms"] frn = "mypkg.norms"`), whose modules
are imported the first time a name is not found, so `model.norm=frn` works once the package is installed.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Optional

from bnrepro import ConfigError

ENTRY_POINTS = "bnrepro.norms"  # plugin packages' entry point group: each names a module that registers norms


@dataclass(frozen=True)
class NormSpec:
    name: str
    build: Optional[Callable]   # (norm: Norm, channels, dim) -> nn.Module; None for `none` (no layer at all)
    options: tuple[str, ...]    # the model.* keys the layer reads besides model.norm: the run's hash covers these only
    batch_stats: bool           # normalizes with training-batch statistics: needs two examples per batch
    label: str                  # its name in the report's tables and legends
    color: Optional[str]        # its colour in the report's figures (None: the house default)
    about: Optional[str]        # what the label means, for figure captions
    finish: Optional[Callable]  # (model, name) -> model: what the norm does outside its layers once the model is
                                # built (wn: reparameterize the layer before each), or None

    @property
    def ghost(self) -> bool:
        """Honours model.ghost_batch (normalizes sub-batches of the training batch)."""
        return "ghost_batch" in self.options


NORMS: dict[str, NormSpec] = {}
_plugins_loaded = False


def register_norm(name: str, *, options: tuple[str, ...] = (), batch_stats: bool = False, label: str | None = None,
                  color: str | None = None, about: str | None = None, finish: Callable | None = None):
    """Register the decorated builder as norm `name` (see NormSpec for the fields); returns it unchanged, with
    its spec as `.norm_spec` (so a dotted path to the builder finds it)."""
    def decorate(build):
        if name in NORMS and NORMS[name].build is not build:
            raise ValueError(f"norm '{name}' is registered twice ({NORMS[name].build} and {build})")
        spec = NormSpec(name, build, tuple(options), batch_stats, label or name, color, about, finish)
        NORMS[name] = spec
        if build is not None:
            build.norm_spec = spec
        return build
    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINTS):
            ep.load()


def _from_path(path: str) -> NormSpec | None:
    """The spec of the class or registered builder at a dotted path (module.attr), or None if there is none."""
    module, _, attr = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    if hasattr(obj, "norm_spec"):
        return obj.norm_spec
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return NormSpec(path, lambda norm, channels, dim: obj(channels), (), issubclass(obj, _BatchNorm),
                        obj.__name__, None, None, None)
    return None


def unknown(name) -> str:
    """The one-line message for a norm name that is not registered (after `model.`)."""
    close = difflib.get_close_matches(str(name), list(NORMS), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return (f"norm={name!r} is not a norm: {hint}set model.norm to one of {', '.join(NORMS)}, or to the dotted path "
            "of your own (mypkg.norms.MyNorm: an nn.Module class or a builder registered with "
            "bnrepro.norm.register_norm; see CONTRIBUTING.md)")


def find(name) -> NormSpec | None:
    """The spec of norm `name`: a registered name, a plugin's (entry point group bnrepro.norms) or a dotted path;
    None if there is none."""
    name = str(name)
    if name not in NORMS:
        if "." in name:
            return _from_path(name)
        _load_plugins()
    return NORMS.get(name)


def norm_spec(name) -> NormSpec:
    """find(name), or ConfigError with unknown(name)."""
    spec = find(name)
    if spec is None:
        raise ConfigError("model." + unknown(name))
    return spec


def other_options(norm) -> set[str]:
    """The model.* norm options that `norm` does not read: every registered norm's options but its own. The run
    identity leaves them out, so a new norm or norm option changes no existing run's hash. Empty for a name
    that is not a norm (nothing is left out)."""
    spec = find(norm)
    if spec is None:
        return set()
    return {key for s in NORMS.values() for key in s.options} - set(spec.options)
