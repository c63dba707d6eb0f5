"""A user's own norm from a package outside the repository, as CONTRIBUTING.md's "add a norm" recipe says: named
by its dotted path or registered by an installed plugin (entry point group bnrepro.norms), trained from the
command line, labelled and coloured in the report; and the run identity, which a new norm leaves as it is."""
from __future__ import annotations

import hashlib
import json
import sys
import textwrap

import pytest
import torch

from bnrepro import flatten
from bnrepro.identity import IGNORED, config_hash
from bnrepro.models import build_model
from bnrepro.norm import REGISTRY, NORMS, Norm, norm_spec
from bnrepro.report import style
from bnrepro.report.judging import label
from bnrepro.train import train
from conftest import compose_cfg
from test_integrity import TINY, run_cli

PLUGIN = '''
"""A toy norm package: an RMS norm over each example's values, registered, and a plain class."""
import torch
from torch import nn

from bnrepro.norm import register_norm


class ToyRMSNorm(nn.Module):
    def __init__(self, channels, eps):
        super().__init__()
        self.num_features, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        dims = tuple(range(1, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * torch.rsqrt(x.square().mean(dims, keepdim=True) + self.eps) * self.weight.reshape(shape)


@register_norm("toy_rms", options=("norm_eps",), label="toy RMS", color="#123456", about="RMS over each example")
def toy_rms(norm, channels, dim):
    return ToyRMSNorm(channels, norm.norm_eps)


class Halve(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.num_features = channels

    def forward(self, x):
        return 0.5 * x
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The package `toynorms` in a folder of its own, importable; its registration undone afterwards."""
    root = tmp_path / "plugins"
    (root / "toynorms").mkdir(parents=True)
    (root / "toynorms" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(root))
    yield root
    REGISTRY.pop("toy_rms", None)
    sys.modules.pop("toynorms", None)


def cli(root, *args):
    return run_cli(*TINY, *args, env={"PYTHONPATH": str(root)})


def test_a_norm_named_by_its_dotted_path_builds_its_layers_and_reads_its_options(plugin):
    from toynorms import Halve, ToyRMSNorm

    model = build_model({"name": "mlp", "norm": "toynorms.toy_rms", "norm_eps": 0.25, "hidden": [8, 8]}, (4,), 3)
    layers = [m for m in model.modules() if isinstance(m, ToyRMSNorm)]
    assert len(layers) == 2 and {m.eps for m in layers} == {0.25}
    assert [m for m in build_model({"name": "mlp", "norm": "toynorms.Halve", "hidden": [8]}, (4,), 3).modules()
            if isinstance(m, Halve)]
    assert norm_spec("toynorms.toy_rms").options == ("norm_eps",) and not norm_spec("toynorms.Halve").batch_stats
    # the report finds its label, colour and meaning from the registration, as it does a built-in norm's
    assert label("toy_rms") == "toy RMS" and style.color("toy RMS") == style.color("toy_rms") == "#123456"
    assert style.explain(["toy RMS", "BN"]) == "toy RMS = RMS over each example; BN = batch normalization"


def test_a_norm_by_dotted_path_trains_from_the_command_line(plugin, tmp_path):
    res = cli(plugin, "model.norm=toynorms.toy_rms", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 < summary["final_acc"] <= 1
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert not any("running_mean" in k for k in state)  # its own layers, not BN's


def test_an_installed_plugin_registers_its_norm_by_name(plugin, tmp_path):
    dist = plugin / "toynorms-0.1.dist-info"  # what pip writes for a package that declares the entry point
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toynorms\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bnrepro.norms]\ntoy = toynorms\n")
    res = cli(plugin, "model.norm=toy_rms", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    # without the plugin, the same name is one clear error
    res = run_cli(*TINY, "model.norm=toy_rms", f"hydra.run.dir={tmp_path / 'other'}")
    assert res.returncode == 2 and "error: model.norm='toy_rms' is not a norm" in res.stderr


def test_a_run_hash_covers_its_own_norms_options_only():
    bn = config_hash(compose_cfg(*TINY))
    assert config_hash(compose_cfg(*TINY, "model.brn_rmax=2.0", "model.noise_std=0.1", "model.norm_groups=4")) == bn
    assert config_hash(compose_cfg(*TINY, "model.norm_eps=0.001")) != bn
    brn = config_hash(compose_cfg(*TINY, "model.norm=brn"))
    assert config_hash(compose_cfg(*TINY, "model.norm=brn", "model.brn_rmax=2.0")) != brn


def test_a_new_norm_changes_no_hash(plugin):
    before = {name: config_hash(compose_cfg(*TINY, f"model.norm={name}")) for name in NORMS if name != "in"}
    import toynorms  # noqa: F401 - registers toy_rms

    assert "toy_rms" in REGISTRY
    assert {name: config_hash(compose_cfg(*TINY, f"model.norm={name}")) for name in before} == before


def hash_over_every_key(cfg) -> str:
    """The run hash as bnrepro computed it before norms were registered: every key but IGNORED."""
    from omegaconf import OmegaConf

    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    kept = {k: v for k, v in sorted(flat.items()) if not any(k == i or k.startswith(i + ".") for i in IGNORED)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_a_run_dir_made_before_the_registry_is_still_its_runs(tmp_path, capsys):
    """Run dirs of today's layout carry the hash over every key: they are recognized by their recorded config,
    so a finished one is not rerun or refused, and a relaunch changes nothing in it."""
    cfg = compose_cfg(*TINY)
    train(cfg, run_dir=tmp_path)
    old = hash_over_every_key(cfg)
    assert old != config_hash(cfg)
    identity = tmp_path / ".bnrepro" / "identity.json"
    identity.write_text(json.dumps({**json.loads(identity.read_text()), "config_hash": old}))
    summary = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "config_hash": old}))
    metrics = (tmp_path / "metrics.jsonl").read_text()
    again = train(cfg, run_dir=tmp_path)
    assert again["status"] == "completed" and again["config_hash"] == old
    assert "already completed" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    with pytest.raises(Exception, match="model.norm"):  # another config is still refused
        train(compose_cfg(*TINY, "model.norm=none"), run_dir=tmp_path)


def test_every_norm_is_registered_once_with_what_the_rest_needs():
    assert NORMS == tuple(REGISTRY)[:len(NORMS)] and len(set(NORMS)) == len(NORMS)
    for name in NORMS:
        spec = norm_spec(name)
        assert spec.name == name and spec.label
        if name != "none":
            assert isinstance(Norm(name, norm_groups=2)(6, 1), torch.nn.Module)
    assert sorted(n for n in NORMS if norm_spec(n).ghost) == ["brn", "ghost_bn"]


def test_the_docs_list_every_registered_norm():
    from conftest import ROOT

    import re

    readme = (ROOT / "README.md").read_text()
    assert [name for name in NORMS if f"`{name}`" not in readme] == []
    schema = (ROOT / "bnrepro/schema.py").read_text()
    block = schema[schema.index("\n    norm: str"):schema.index("\n    norm_groups:")]  # the norm key's comment
    assert set(NORMS) <= set(re.findall(r"[a-z_0-9]+", block))
