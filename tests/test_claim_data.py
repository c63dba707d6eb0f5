"""The committed configs run the frozen designs (issue 21; bnrepro/report/design.py): every cpu sweep runs on the
datasets its claim's Design names (both embedded datasets where the model can take them, a verdict each), every
job of it has the Design's config, and every experiment composes at every scale."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import bnrepro  # noqa: F401  (registers the config resolvers)
from bnrepro.claims import CLAIMS
from bnrepro.report.design import cell
from bnrepro.report.runs import Run
from bnrepro.rundir import flatten
from conftest import CONFIGS

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
DESIGN = {claim.experiments[0]: claim.designs["cpu"] for claim in CLAIMS}
GPU_DATA = {"cifar": "cifar10", "imagenet": "imagenet"}
MNIST_AT_GPU = {"fig1"}  # Figure 1 runs on MNIST at the GPU scales


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def jobs(cfg) -> list[list[str]]:
    """Every job of the sweep as its overrides (the group axes; value axes do not change data)."""
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = {o.get_key_element(): list(o.sweep_string_iterator()) if o.is_sweep_override()
            else [o.get_value_element_as_str()] for o in parsed}
    keys = [k for k in axes if k != "seed"]
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(axes[k] for k in keys))]


def test_every_experiment_has_a_frozen_cpu_design():
    assert set(DESIGN) == set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_cpu_job_is_inside_its_frozen_design(experiment):
    """Each job of the sweep (data axis and group axes; one job per value axis is enough: values never change the
    design's keys, except C10's LR, whose budget rule is what the design freezes), composed as the suite composes
    it, is a run the report would judge: design.outside(run) is None."""
    design = DESIGN[experiment]
    base = [f"experiment={experiment}", "scale=cpu"]
    cfg = compose_cfg(base)
    cells = ("cell", "c17_cell")  # C7, C16 sweep cells (a dataset and net) in place of data; C17 a cell and activation
    if not set(cells) & set(cfg.hydra.sweeper.params or {}):
        assert tuple(str(cfg.datasets).split(",")) == design.data
    job_list = jobs(cfg)
    group_axes = [j for j in job_list
                  if any(o.split("=")[0] in ("ladder", "norm_batch", "c8", "data", *cells) for o in j)]
    seen = set()
    for job in group_axes or job_list[:1]:
        composed = compose_cfg(base + job + ["seed=2000"])
        OmegaConf.set_struct(composed, False)
        composed.pop("hydra")
        config = flatten(OmegaConf.to_container(composed, resolve=True))
        run = Run(dir=Path(experiment), config=config, summary={"status": "completed", "scale": "cpu"})
        assert design.outside(run) is None, (job, design.outside(run))
        seen.add(cell(run, design.data))
    assert seen == set(design.data)


@pytest.mark.parametrize("scale", sorted(GPU_DATA))
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_gpu_scales_keep_their_data(experiment, scale):
    """At the GPU scales the sweep's data axis is the scale's dataset (fig1: MNIST, the paper's Fig. 1 data)."""
    cfg = compose_cfg([f"experiment={experiment}", f"scale={scale}"])
    data = {o.split("=", 1)[1] for job in jobs(cfg) for o in job if o.startswith("data=")}
    assert data == {"mnist" if experiment in MNIST_AT_GPU else GPU_DATA[scale]}


def test_a_launched_run_off_its_arms_budget_is_outside_the_design(tmp_path):
    """C7's budget is derived per arm (9,600 examples / the batch), in no config key of its Design: a run Hydra
    recorded as `norm_batch=real_bn_4` is judged only at the steps the committed configs define for that arm
    (the smoke sweep's `trainer.max_steps=20` used to be judged)."""
    import yaml

    from bnrepro.report.design import expected_steps

    design, job = DESIGN["c7_small_batch"], ["cell=digits", "norm_batch=real_bn_4", "seed=2005"]
    assert expected_steps("c7_small_batch", "cpu", ("cell=digits", "norm_batch=real_bn_4")) == 9600 // 4
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*job, "experiment=c7_small_batch",
                                                                         "scale=cpu"]))
    for steps, refused in ((2400, False), (20, True)):
        composed = compose_cfg(["experiment=c7_small_batch", "scale=cpu", *job, f"trainer.max_steps={steps}"])
        OmegaConf.set_struct(composed, False)
        composed.pop("hydra")
        config = flatten(OmegaConf.to_container(composed, resolve=True))
        run = Run(dir=tmp_path, config=config, summary={"status": "completed", "scale": "cpu"})
        why = design.outside(run)
        assert (why == "trainer.max_steps=20 (the design says 2400 for this arm)") if refused else why is None


def test_a_cell_is_a_dataset_and_net_where_the_design_names_the_pair():
    """C7 runs a conv net beside the MLP on MNIST-1D, a verdict each: runs fall into "<data>/<model>" where the
    design names that pair, else into their dataset; a net the design does not run on a dataset is refused."""
    design = DESIGN["c7_small_batch"]

    def run(data, model, depth=None):
        config = {"data.name": data, "model.name": model, "model.depth": depth, "model.width": depth,
                  "claim_params.c7_real.examples": 9600, "claim_params.c7_real.lr_per_256": 0.8,
                  "model.brn_warmup": 100, "model.norm_groups": 4}
        return Run(dir=None, config=config, summary={"status": "completed", "scale": "cpu"})

    assert [cell(run(d, m), design.data) for d, m in (("digits", "mlp"), ("mnist1d", "mlp"),
                                                        ("mnist1d", "resnet_cifar"))] == list(design.data)
    assert design.outside(run("mnist1d", "mlp")) is None
    assert design.outside(run("mnist1d", "resnet_cifar", 8)) is None
    assert design.outside(run("mnist1d", "resnet_cifar", 20)) == "model.depth=20 (the design says 8)"
    assert design.outside(run("digits", "resnet_cifar", 8)) == "model.name='resnet_cifar' (the design says 'mlp')"
