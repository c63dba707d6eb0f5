"""BN's properties, as the scorecard (bnrepro/scorecard/) judges any normalization layer on them.

A property is declared once, as `PROPERTY` in the module of the claim it comes from (bnrepro/claims/): the claim's
experiment supplies the design (datasets, budgets, seeds, the frozen Design the report checks), its judge the
measurements and its rule the statistics. The layer takes BN's place: its runs are the claim's BN arms with
`model.norm=<layer>` (`arms`), judged beside the claim's own reference runs (`reference`: no BN, and BN for the
"vs BN" column) as if they were BN's. A property is decided by one test: one of the claim's (`test` names its key),
or a test of its own on one of the judge's measurements, where the claim's test says the opposite of the property
(C12: BN explodes; the property: the layer does not) or where the claim is about something else (C8). Every
threshold is the claim's or one the rules had before any scorecard run (SAME, FLAT), stated in its `why`.
"""
from __future__ import annotations

from dataclasses import dataclass

from bnrepro.report.judging import Headline, Result
from bnrepro.report.rules import (FAILS, HOLDS, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, PARTLY, PRECONDITION,
                                  REPRODUCED, UNCLEAR, Test, combine)

NOT_APPLICABLE = "not applicable"
# the outcomes a scorecard cell can have; "partly": holds on one dataset, unclear on another (rules.combine)
OUTCOMES = (HOLDS, PARTLY, FAILS, UNCLEAR, NOT_APPLICABLE, NOT_RUN)
_AS_VERDICT = {HOLDS: REPRODUCED, FAILS: NOT_REPRODUCED, UNCLEAR: INCONCLUSIVE, NOT_RUN: NOT_RUN}
_AS_OUTCOME = {REPRODUCED: HOLDS, NOT_REPRODUCED: FAILS, INCONCLUSIVE: UNCLEAR, PARTLY: PARTLY, NOT_RUN: NOT_RUN}


Arms = "tuple[str, ...] | dict[str, tuple[str, ...]]"  # one set of overrides, or one per scale


def arms_at(arms, scale: str) -> tuple[str, ...] | None:
    """The overrides of `arms` (a Property's arms or reference) at a scale: the same at every scale, or the scale's
    own where they differ by scale (C7's are cpu's only); None where the property declares none at that scale."""
    if isinstance(arms, dict):
        return tuple(arms[scale]) if scale in arms else None
    return tuple(arms)


@dataclass(frozen=True)
class Property:
    """One of BN's properties, judged for any norm by the claim whose module declares it."""

    name: str  # what the layer keeps, in words
    short: str  # the scorecard's column header
    test: str | Test  # the claim rule's deciding test (its key), or a Test of the property's own (key: the
    # judge's measurement it reads)
    arms: Arms = ()  # overrides of the claim's sweep that give the norm's arms (model.norm=<norm> added)
    reference: Arms = ()  # overrides of the claim's sweep that give the reference arms (the claims' runs)
    bn: str = "bn"  # model.norm of the arm whose place the norm takes (C8's design runs BN as ghost_bn, ghost 0)
    preconditions: tuple[str, ...] | None = None  # the rule's preconditions that gate it (None: all of them)
    batch_stats: bool = False  # applies only to a norm that normalizes with batch statistics (else not applicable)
    fold: bool = False  # C15: a layer that is no per-channel affine map at inference cannot fold: fails, no runs

    @property
    def key(self) -> str:
        return self.test if isinstance(self.test, str) else self.test.key


def _one(prop: Property, claim, result: Result) -> dict:
    """The property on one dataset (a Result of the claim's judge): its outcome, the deciding interval, and why."""
    cell = {"outcome": UNCLEAR, "interval": None, "text": "", "why": ""}
    if result.verdict == NOT_RUN:
        return {**cell, "outcome": NOT_RUN, "why": result.reason or result.ours}
    if not result.checks:  # judged nothing: refused, untestable, unpoolable
        return {**cell, "why": result.reason or result.ours}
    gates = [c for c in result.checks if c["role"] == PRECONDITION
             and (prop.preconditions is None or c["key"] in prop.preconditions)]
    test = next((t for t in claim.rule.tests if t.key == prop.test), None) if isinstance(prop.test, str) else prop.test
    if test is None:
        raise ValueError(f"{claim.id}'s property names test {prop.test!r}, which its rule does not have")
    iv = result.measured.get(prop.key)
    cell.update(outcome=test.outcome(iv), interval=iv.to_json() if iv else None, text=iv.fmt() if iv else "",
                why=test.decide(iv))
    for c in gates:
        if c["outcome"] != HOLDS:
            cell.update(outcome=UNCLEAR, why=f"precondition [{c['key']}] {c['outcome']}: {c['says']}")
            break
    return cell


def judge_property(prop: Property, claim, headline: Headline) -> dict:
    """The property's cell from the claim judged on the norm's runs in BN's place: an outcome per dataset (the
    deciding test, gated by the preconditions), combined across datasets by the claims table's rule."""
    per = {(r.data or "all"): _one(prop, claim, r) for r in headline.per_data}
    verdict, said = combine({d: _AS_VERDICT[c["outcome"]] for d, c in per.items()})
    runs = sum(len([run for run in r.runs if run.status in ("completed", "diverged")]) for r in headline.per_data)
    return {"outcome": _AS_OUTCOME[verdict], "combined": said, "data": per, "runs": runs,
            "design": headline.design_note}


def not_applicable(why: str) -> dict:
    return {"outcome": NOT_APPLICABLE, "combined": why, "data": {}, "runs": 0, "why": why}


def by_construction(outcome: str, why: str) -> dict:
    """A cell decided without runs (a layer that cannot fold fails C15's property): said so, with the reason."""
    return {"outcome": outcome, "combined": f"by construction: {why}", "data": {}, "runs": 0, "why": why}
