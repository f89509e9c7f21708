"""Scoring warnings against hindsight labels: pure functions over per-run outcomes.

A contestant (a detector, a set of them, a baseline) either warned on a run, first at some step,
or did not. Against the run's label:

- ``none``: a warning is a false alarm (``false_alarm``), silence is right (``quiet``);
- ``plateau``: not a failure: a warning is neither a catch nor a false alarm (``warned`` / ``quiet``);
- any other kind (spike, divergence, nan, grokking, edge_of_stability) with its ``event_step``: the
  first warning is ``early`` when it comes at or before ``event_step``, ``within_k`` when it comes
  after but no later than ``k_step`` (the step of the k-th logged training-loss point after
  ``event_step``: the grace is counted in logged points so that it means the same in a run logged
  every step and one logged every 500), ``late`` after that, ``missed`` when there is none.

Recall of a kind is the share of its runs that are ``early``; "by +k" is the share ``early`` or
``within_k``. Both look only at the first warning, so a warning about something else long before
the event counts as a catch; ``near`` (any warning within k logged points either side of
``event_step``) tells the warnings about the event itself apart, and is reported beside them, with
the lead of the first such warning. Lead time is ``event_step - first warning step`` (positive: early), over the runs a
contestant caught (``early``); its quartiles are numpy's default (linear) percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["FAILURE_KINDS", "Leads", "Rate", "RunOutcome", "Summary", "leads", "summarise"]

FAILURE_KINDS = ("spike", "divergence", "nan")  # breakage: pooled into the lead-time statistics
NOT_FAILURES = ("plateau",)


@dataclass(frozen=True)
class RunOutcome:
    """What one contestant did on one labelled run.

    ``first_warning`` is the step of its first warning (None: it never warned); ``n_warnings``
    how many it raised. ``k_step`` is the last step that still counts as "within +k" (None when
    the label has no step); ``near_warning`` the step of the first warning within k logged points
    either side of the event (None when there was none).
    """

    run: str
    label: str
    event_step: int | None
    first_warning: int | None
    k_step: int | None = None
    n_warnings: int = 0
    near_warning: int | None = None  # the first warning within k logged points either side of event_step

    @property
    def warned(self) -> bool:
        return self.first_warning is not None

    @property
    def verdict(self) -> str:
        if self.label == "none":
            return "false_alarm" if self.warned else "quiet"
        if self.label in NOT_FAILURES or self.event_step is None:
            return "warned" if self.warned else "quiet"
        if self.first_warning is None:
            return "missed"
        if self.first_warning <= self.event_step:
            return "early"
        if self.k_step is not None and self.first_warning <= self.k_step:
            return "within_k"
        return "late"

    @property
    def near(self) -> bool:
        return self.near_warning is not None

    @property
    def near_lead(self) -> int | None:
        """``event_step - near_warning``: the lead of the warning about the event itself."""
        if self.near_warning is None or self.event_step is None:
            return None
        return self.event_step - self.near_warning

    @property
    def lead(self) -> int | None:
        """``event_step - first_warning`` (positive: early); None without a warning or a labelled step."""
        if self.first_warning is None or self.event_step is None or self.label in ("none", *NOT_FAILURES):
            return None
        return self.event_step - self.first_warning

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict, "lead": self.lead, "near_lead": self.near_lead}


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``n``; ``fraction`` is None for an empty group."""

    hits: int
    n: int

    @property
    def fraction(self) -> float | None:
        return self.hits / self.n if self.n else None

    def __str__(self) -> str:
        return f"{self.hits}/{self.n}" if self.n else "-"


@dataclass(frozen=True)
class Leads:
    """Lead times (steps) of the caught runs: how many, median and quartiles (None when there are none)."""

    n: int
    median: float | None
    q1: float | None
    q3: float | None


def leads(values: Iterable[int]) -> Leads:
    xs = np.asarray(list(values), dtype=float)
    if xs.size == 0:
        return Leads(0, None, None, None)
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return Leads(int(xs.size), float(med), float(q1), float(q3))


@dataclass
class Summary:
    """One contestant on one data set.

    ``recall[kind]``, ``by_k[kind]`` and ``near[kind]`` for every labelled kind but none and plateau;
    ``false_alarms`` over the ``none`` runs; ``plateau_warned`` over the plateau runs; ``leads``
    pooled over the caught runs of :data:`FAILURE_KINDS`, ``leads_by_kind`` per kind; ``near_leads``
    the leads of the warnings near the event, pooled the same way.
    """

    recall: dict[str, Rate] = field(default_factory=dict)
    by_k: dict[str, Rate] = field(default_factory=dict)
    near: dict[str, Rate] = field(default_factory=dict)
    false_alarms: Rate = Rate(0, 0)
    plateau_warned: Rate = Rate(0, 0)
    leads: Leads = Leads(0, None, None, None)
    near_leads: Leads = Leads(0, None, None, None)
    leads_by_kind: dict[str, Leads] = field(default_factory=dict)
    n_runs: int = 0

    def to_dict(self) -> dict:
        def rate(r: Rate) -> dict:
            return {"hits": r.hits, "n": r.n, "fraction": r.fraction}

        return {"n_runs": self.n_runs,
                "recall": {k: rate(v) for k, v in self.recall.items()},
                "by_k": {k: rate(v) for k, v in self.by_k.items()},
                "near": {k: rate(v) for k, v in self.near.items()},
                "false_alarms": rate(self.false_alarms), "plateau_warned": rate(self.plateau_warned),
                "leads": asdict(self.leads), "near_leads": asdict(self.near_leads), "leads_by_kind": {k: asdict(v) for k, v in self.leads_by_kind.items()}}


def summarise(outcomes: Sequence[RunOutcome], kinds: Sequence[str] | None = None) -> Summary:
    """Recall, recall by +k, false-alarm rate and lead times of one contestant's outcomes.

    ``kinds`` fixes which event kinds get a (possibly empty) entry; by default those present.
    """
    if kinds is None:
        kinds = sorted({o.label for o in outcomes} - {"none", *NOT_FAILURES})
    s = Summary(n_runs=len(outcomes))
    for kind in kinds:
        group = [o for o in outcomes if o.label == kind and o.event_step is not None]
        verdicts = [o.verdict for o in group]
        s.recall[kind] = Rate(verdicts.count("early"), len(group))
        s.by_k[kind] = Rate(verdicts.count("early") + verdicts.count("within_k"), len(group))
        s.near[kind] = Rate(sum(o.near for o in group), len(group))
        s.leads_by_kind[kind] = leads(o.lead for o in group if o.verdict == "early")
    healthy = [o for o in outcomes if o.label == "none"]
    s.false_alarms = Rate(sum(o.warned for o in healthy), len(healthy))
    flat = [o for o in outcomes if o.label in NOT_FAILURES]
    s.plateau_warned = Rate(sum(o.warned for o in flat), len(flat))
    s.leads = leads(o.lead for o in outcomes if o.label in FAILURE_KINDS and o.verdict == "early")
    s.near_leads = leads(o.near_lead for o in outcomes if o.label in FAILURE_KINDS and o.near)
    return s
