"""One norm's row of the scorecard: its runs found or launched, and each property judged with the norm in BN's place.

For each property (a claim module's PROPERTY, bnrepro/report/properties.py): the layer and the property's nets are
checked (bnrepro/scorecard/checks.py: not applicable, with the reason, or decided by construction); the norm's
arms and the reference arms are found by config identity or launched (jobs.py); then the claim is judged by its
own judge, design and rule on the reference runs with the norm's runs standing in for BN's (their model.norm read
as BN's), and the property read off the claim's deciding test. BN's own cell, from the reference runs alone, is
the "vs BN" beside every other norm's.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bnrepro import ConfigError
from bnrepro.loop import git_rev
from bnrepro.norm import norm_spec
from bnrepro.report.judging import judge_claim
from bnrepro.report.properties import (FAILS, NOT_APPLICABLE, NOT_RUN, Property, arms_at, by_construction,
                                       judge_property, not_applicable)
from bnrepro.report.runs import Run, load_run
from bnrepro.scorecard import checks
from bnrepro.scorecard.jobs import Job, index, jobs, launch


@dataclass
class Plan:
    """A property's runs for one norm: the norm's jobs and the reference jobs, or the cell decided without runs."""
    claim: object
    prop: Property
    mine: list[Job] = field(default_factory=list)
    reference: list[Job] = field(default_factory=list)
    decided: dict | None = None  # not applicable, or decided by construction
    skipped: dict[str, str] = field(default_factory=dict)  # net -> why it cannot take the norm (its jobs dropped)


def properties(only: set[str] | None = None) -> list[tuple[object, Property]]:
    """(claim, property) for every claim module that declares one, in claim order (found, not listed)."""
    from bnrepro.claims import MODULES

    return [(m.CLAIM, m.PROPERTY) for m in MODULES if hasattr(m, "PROPERTY") and (not only or m.CLAIM.id in only)]


def option_overrides(options: dict) -> list[str]:
    return [f"model.{k}={v}" for k, v in options.items()]


def plan(norm: str, options: dict, scale: str, runs: Path, score_runs: Path, claim, prop: Property,
         extra: tuple[str, ...] = (), data: str | None = None) -> Plan:
    """What a property needs for `norm`: the jobs (on dataset `data` only, where given), or the cell when it is
    decided without runs."""
    p = Plan(claim, prop)
    spec = norm_spec(norm)
    experiment = claim.experiments[0]
    if arms_at(prop.arms, scale) is None:
        p.decided = not_applicable(f"{claim.id}'s property declares its arms at scale {', '.join(prop.arms)} only")
        return p

    def on(job: Job) -> bool:
        return data is None or job.net.endswith(f" on {data}")

    # BN's runs first: every cell, decided without runs or not, has BN's beside it
    p.reference = [job for job, _ in jobs(experiment, scale, [*arms_at(prop.reference, scale), *extra], runs)
                   if on(job)]
    if prop.batch_stats and not spec.batch_stats:
        p.decided = not_applicable(f"no batch statistics: {spec.label} needs no population statistics, so there is "
                                   "no train/test discrepancy to measure")
        return p
    if prop.batch_stats and not checks.running_stats(norm, options):
        p.decided = not_applicable(f"{spec.label} keeps running statistics of its own, not a torch _BatchNorm's, "
                                   "which precise BN (bnrepro/inference.py) recalibrates: the measure does not apply")
        return p
    if prop.fold and norm != "bn":
        affine = checks.affine_at_inference(norm, options)
        if affine is False:
            p.decided = by_construction(FAILS, f"{spec.label} in eval mode is not a fixed affine map per channel "
                                               "(it normalizes with each example's own statistics), so there is "
                                               "nothing to fold into the layer before")
            return p
        if affine is None or not checks.running_stats(norm, options):
            p.decided = not_applicable(f"{spec.label} is affine at inference but not a torch _BatchNorm with running "
                                       "statistics, which the fold probe folds" if affine else
                                       f"{spec.label} fails on conv feature maps")
            return p
    if norm == "bn":
        return p  # BN's row: the claims' own runs
    overrides = [*arms_at(prop.arms, scale), f"model.norm={norm}", *option_overrides(options), *extra]
    mine = jobs(experiment, scale, overrides, score_runs)
    mine = [(job, cfg) for job, cfg in mine if on(job)]
    if not mine:
        p.decided = not_applicable(f"{claim.id}'s design runs nothing on {data} at scale {scale}")
        return p
    nets = {}
    for job, cfg in mine:  # one check per net and dataset (C7's cells, C15's nets)
        nets.setdefault(job.net, cfg)
    p.skipped = {net: why for net, cfg in nets.items() if (why := checks.check_net(cfg))}
    if len(p.skipped) == len(nets):
        reasons = set(p.skipped.values())
        p.decided = not_applicable(f"{', '.join(p.skipped)}: {reasons.pop()}" if len(reasons) == 1 else
                                   "; ".join(f"{net}: {why}" for net, why in p.skipped.items()))
        return p
    p.mine = [job for job, _ in mine if job.net not in p.skipped]
    return p


def _as_bn(run: Run, bn: str) -> Run:
    """The norm's run read as the claim's BN arm (its model.norm replaced; everything else its own)."""
    return dataclasses.replace(run, config={**run.config, "model.norm": bn})


def judge(p: Plan, found: dict[str, Path], norm: str, bn_cell: dict | None) -> dict:
    """The property's cell for the norm from the runs found (bn_cell: BN's, for "vs BN")."""
    if p.decided is not None:
        return {**p.decided, "vs_bn": _brief(bn_cell)}
    reference = [load_run(found[j.hash]) for j in p.reference if j.hash in found]
    mine = [_as_bn(load_run(found[j.hash]), p.prop.bn) for j in p.mine if j.hash in found]
    runs = reference if norm == "bn" else [r for r in reference if r.get("model.norm") != p.prop.bn] + mine
    cell = judge_property(p.prop, p.claim, judge_claim(p.claim, runs))
    wanted = p.reference + p.mine
    cell["missing"] = sum(j.hash not in found for j in wanted)
    cell["run_dirs"] = sorted({str(found[j.hash]) for j in wanted if j.hash in found})
    if p.skipped:
        cell["combined"] += "; not applicable on " + "; ".join(f"{k} ({v})" for k, v in p.skipped.items())
    if bn_cell is not None:
        cell["vs_bn"] = _brief(bn_cell)
    return cell


def _brief(cell: dict | None) -> dict | None:
    if cell is None:
        return None
    return {"outcome": cell["outcome"], "data": {d: {"outcome": c["outcome"], "text": c.get("text", "")}
                                                 for d, c in cell.get("data", {}).items()}}


def score(norm: str, options: dict, scale: str, runs: Path, score_runs: Path, streams: int,
          only: set[str] | None = None, dry_run: bool = False, extra: tuple[str, ...] = (),
          data: str | None = None) -> dict:
    """The norm's row: {norm, label, options, cells, launched, reused, failed}. Raises ConfigError (exit 2 at the
    door) when the norm is not a norm layer (checks.check_layer)."""
    spec = norm_spec(norm)
    inputs = checks.check_layer(norm, options)
    plans = []
    for claim, prop in properties(only):
        try:
            plans.append(plan(norm, options, scale, runs, score_runs, claim, prop, extra, data))
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a design that does not compose with the norm's options: one line
            raise ConfigError(f"{claim.id}'s design does not compose with norm={norm} "
                              f"{' '.join(option_overrides(options))}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0]}") from None
    # a cell decided without runs launches none; its "vs BN" reads BN's runs where they exist
    wanted = {j.hash: j for p in plans for j in (p.reference if p.decided is None else []) + p.mine}
    found = index(runs, score_runs)
    missing = [j for h, j in wanted.items() if h not in found]
    failed: list[str] = []
    print(f"scorecard: {spec.label}: {len(wanted)} runs needed, {len(wanted) - len(missing)} found (reused), "
          f"{len(missing)} to launch", flush=True)
    if missing and not dry_run:
        failed = launch(missing, streams)
        found = index(runs, score_runs)
    bn_cells = {}
    if norm != "bn":
        for p in plans:
            ref = Plan(p.claim, p.prop, reference=p.reference)
            bn_cells[p.claim.id] = judge(ref, found, "bn", None) if p.reference else None
    cells, broken = {}, []
    for p in plans:
        try:
            cells[p.claim.id] = judge(p, found, norm, bn_cells.get(p.claim.id))
        except Exception as e:  # noqa: BLE001 - a judge that fails on the norm's runs: its cell says so, and the
            # other cells are judged (the row then lists it as failed, and the command exits 1)
            first = str(e).splitlines()[0] if str(e) else ""
            why = f"{p.claim.id}'s judge failed on {norm}'s runs: {type(e).__name__}: {first}"
            print(f"error: {why}", file=sys.stderr, flush=True)
            cells[p.claim.id] = {"outcome": NOT_RUN, "combined": why, "data": {}, "runs": 0, "why": why}
            broken.append(p.claim.id)
    return {"norm": norm, "label": spec.label, "options": options, "data": data or "all", "inputs": inputs,
            "cells": cells,
            "launched": 0 if dry_run else len(missing), "reused": len(wanted) - len(missing),
            "failed": failed + [f"{cid}'s judge" for cid in broken], "git_rev": git_rev()}
