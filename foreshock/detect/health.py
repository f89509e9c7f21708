"""Run health: one state per run, healthy / watch / warning / critical, combined from all detectors' events.

A run's health moves as events arrive, by these rules (``step`` is the event's step):

1. **critical**: any critical event (a divergence, a loss that stays NaN).
2. **warning**: any warning event (a loss spike, overfitting), unless already critical.
3. **watch**: info early warnings from at least ``min_families`` independent families within
   ``window(step)`` steps of each other (say attention-logit growth and a gradient-norm spike).
   One family repeating itself is one signal, not two. A family is the event's detector, unless
   ``families`` maps detectors onto shared families.
4. **decay**: a ``watch`` run goes back to healthy after ``quiet(step)`` steps with no early
   warning; a ``warning`` or ``critical`` run only once every detector that raised an alarm has
   reported a recovery event (``recovery`` or ``plateau_end``) after its last alarm, and then
   ``quiet(step)`` steps with neither an alarm nor an early warning. A broken run that never
   recovers (or an overfitting warning, which has no recovery) stays where it is.

Which events count: every warning and critical event is an alarm; info events are early warnings
only when their kind is one of ``early_kinds`` (a gradient spike, logit growth, a routine NaN, an
early-warning indicator); ``recovery_kinds`` calm; any other info event (a phase, a plateau, a
change point, grokking) says what the run is doing, not that it is in trouble, and does nothing. The windows grow with the
run, so one setting serves a 500-step and a 500k-step run: ``window(step) = max(min_window,
window_frac * step)``, likewise ``quiet``. The step at which a quiet period ends is computed, not
waited for, so :func:`health_timeline` on a finished run gives the changes a live
:class:`Health` fed the same events would have given.

Calibration (``bench/results/precursor_calibration.md``; first departure from healthy, the default
set's events, lab runs of ``bench/lab_runs`` and shared real logs, ``OMP_NUM_THREADS=1
.venv/bin/python bench/truth.py --skip-peers --min-severity info``): what makes early warnings
mean something is that they coincide. On the lab runs the healthy runs' gradient spikes and logit
growth come at different moments of the first few hundred steps, the diverging runs' together, so
the window is what sets the false alarms: ``min_window`` 100 (the earlier default) went to watch on
9/27 healthy lab runs, 50 on 7/27, 25 on 6/27, 10 (the default) on 2/27, each catching 15/16
divergences before the labelled step (the warnings alone: 12/16). The shared runs do not move with
it (1/75 runs labelled none leave healthy, by an overfitting warning; 16/18 spikes and divergences
caught). ``min_families=3`` reaches 0/27 but catches 13/16, one more than the warnings alone.
The window was chosen on those 16 divergences; on the lab set as it grew after (36 divergences,
28 healthy runs, ``bench/results/truth.md``) the default catches 30/36 before the labelled step (the
warnings alone 26/36), 2/28 healthy runs still leaving healthy: the choice was optimistic, as
choices on the set they are scored on are.

Each :class:`HealthChange` names the step, the new and previous state, one sentence of reason
and the events that moved it (with their detectors); ``to_dict`` gives plain JSON types.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from foreshock.events import Event

__all__ = ["EARLY_KINDS", "HEALTH_STATES", "Health", "HealthChange", "HealthState", "health_timeline"]

HealthState = Literal["healthy", "watch", "warning", "critical"]
HEALTH_STATES: tuple[HealthState, ...] = ("healthy", "watch", "warning", "critical")
#: kinds of info events that are early warnings (the precursor detectors' and a routine NaN)
EARLY_KINDS: tuple[str, ...] = ("early_warning", "grad_spike", "update_excursion", "logit_growth", "logit_drift",
                                "nan")


@dataclass(frozen=True)
class HealthChange:
    """The run's health changed at ``step`` from ``previous`` to ``state``, because of ``events``."""

    step: int
    state: HealthState
    previous: HealthState
    reason: str
    events: tuple[Event, ...] = ()

    @property
    def detectors(self) -> tuple[str, ...]:
        """The detectors whose events moved the state, sorted, each once."""
        return tuple(sorted({e.detector for e in self.events}))

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "state": self.state, "previous": self.previous, "reason": self.reason,
                "detectors": list(self.detectors), "events": [e.to_dict() for e in self.events]}


class Health:
    """The health of one run, updated from the events of all its detectors as they fire.

    Parameters
    ----------
    min_families : int
        Independent families of info early warnings needed within the window to go to ``watch``.
    window_frac, min_window : float, int
        The window of rule 3 at a step: ``max(min_window, window_frac * step)`` steps.
    quiet_frac, min_quiet : float, int
        The quiet period of rule 4 at a step: ``max(min_quiet, quiet_frac * step)`` steps.
    families : mapping of str to str, optional
        Detector name -> family name; detectors not in it are their own family.
    early_kinds, recovery_kinds : tuple of str
        Kinds of info events that are early warnings, and kinds that calm.

    Examples
    --------
    >>> from foreshock.events import Event
    >>> h = Health()
    >>> spike = Event("spike", "spike", "warning", 500, 500, "train/loss spiked.", {"metric": "train/loss"})
    >>> back = Event("spike", "recovery", "info", 501, 500, "train/loss is back.", {"metric": "train/loss"})
    >>> [(c.step, c.state) for c in h.update([spike, back], step=2000)]
    [(500, 'warning'), (701, 'healthy')]
    """

    def __init__(self, *, min_families: int = 2, window_frac: float = 0.05, min_window: int = 10,
                 quiet_frac: float = 0.1, min_quiet: int = 200, families: Mapping[str, str] | None = None,
                 early_kinds: tuple[str, ...] = EARLY_KINDS,
                 recovery_kinds: tuple[str, ...] = ("recovery", "plateau_end")):
        if min_families < 1 or min_window < 0 or min_quiet < 0:
            raise ValueError(f"need min_families >= 1 and min_window, min_quiet >= 0, got {min_families=}, "
                             f"{min_window=}, {min_quiet=}")
        if not (0 <= window_frac < 1 and 0 <= quiet_frac < 1):
            raise ValueError(f"need 0 <= window_frac, quiet_frac < 1, got {window_frac=}, {quiet_frac=}")
        self.min_families = min_families
        self.window_frac = window_frac
        self.min_window = min_window
        self.quiet_frac = quiet_frac
        self.min_quiet = min_quiet
        self.families = dict(families or {})
        self.early_kinds = tuple(early_kinds)
        self.recovery_kinds = tuple(recovery_kinds)
        self.reset()

    def reset(self) -> None:
        """Back to healthy, with no history."""
        self.state: HealthState = "healthy"
        self.changes: list[HealthChange] = []
        self._recent: list[Event] = []  # early warnings still inside a window of the newest one
        self._last_concern: int | None = None  # step of the last alarm or early warning
        self._open: dict[str, Event] = {}  # detector -> its last alarm, until that detector recovers
        self._recovery: Event | None = None  # the recovery that closed the last open alarm

    # -- the windows --------------------------------------------------------------------------------
    def window(self, step: int) -> float:
        """Steps within which early warnings of different families combine, at ``step``."""
        return max(self.min_window, self.window_frac * step)

    def quiet_end(self, since: int) -> int:
        """First step at which ``quiet(step)`` steps have passed since step ``since``.

        Solves ``step - since >= max(min_quiet, quiet_frac * step)`` for the smallest integer step.
        """
        by_fraction = math.ceil(since / (1.0 - self.quiet_frac)) if since > 0 else since
        return max(since + self.min_quiet, by_fraction)

    # -- updates ------------------------------------------------------------------------------------
    def update(self, events: Iterable[Event], step: int | None = None) -> list[HealthChange]:
        """Take in new events (in step order) and, optionally, that the run has reached ``step``.

        Returns the changes this made, in order; they are also appended to :attr:`changes`.
        """
        new: list[HealthChange] = []
        for e in sorted(events, key=lambda e: e.step):
            new += self._decay(e.step, before=True)
            new += self._take(e)
        if step is not None:
            new += self._decay(step, before=False)
        self.changes += new
        return new

    def _family(self, e: Event) -> str:
        return self.families.get(e.detector, e.detector)

    def _take(self, e: Event) -> list[HealthChange]:
        if e.kind in self.recovery_kinds:
            if self._open.pop(e.detector, None) is not None:
                self._recovery = e
            return []
        alarm = e.severity in ("warning", "critical")
        if not alarm and e.kind not in self.early_kinds:
            return []
        self._last_concern = e.step if self._last_concern is None else max(self._last_concern, e.step)
        if alarm:
            self._open[e.detector] = e
            self._recovery = None
            if HEALTH_STATES.index(e.severity) > HEALTH_STATES.index(self.state):
                what = "a critical event" if e.severity == "critical" else "a warning"
                return [self._move(e.step, e.severity, f"{what} from {e.detector}: {e.message}", (e,))]
            return []
        # an info early warning
        horizon = e.step - self.window(e.step)
        self._recent = [r for r in self._recent if r.step >= horizon] + [e]
        latest: dict[str, Event] = {}
        for r in self._recent:
            latest[self._family(r)] = r
        if self.state == "healthy" and len(latest) >= self.min_families:
            names = ", ".join(sorted(latest))
            return [self._move(e.step, "watch", f"early warnings from {len(latest)} independent families "
                               f"({names}) within {self.window(e.step):.0f} steps.",
                               tuple(sorted(latest.values(), key=lambda r: r.step)))]
        return []

    def _decay(self, now: int, *, before: bool) -> list[HealthChange]:
        """Go back to healthy if a quiet period has ended by ``now`` (before ``now`` when ``before``)."""
        if self.state == "healthy" or self._last_concern is None:
            return []
        if self.state == "watch":
            since, calm = self._last_concern, ()
        else:
            if self._open or self._recovery is None:
                return []
            since, calm = max(self._last_concern, self._recovery.step), (self._recovery,)
        end = self.quiet_end(since)
        if end > now or (before and end == now):
            return []
        what = "no early warning" if self.state == "watch" else f"no alarm since the recovery at step " \
            f"{self._recovery.step}"  # type: ignore[union-attr]
        change = self._move(end, "healthy", f"{end - since} quiet steps with {what}.", calm)
        self._recent = []
        self._recovery = None
        return [change]

    def _move(self, step: int, state: HealthState, reason: str, events: tuple[Event, ...]) -> HealthChange:
        change = HealthChange(step=int(step), state=state, previous=self.state, reason=reason, events=events)
        self.state = state
        return change


def health_timeline(events: Iterable[Event], last_step: int | None = None, **params: Any) -> list[HealthChange]:
    """The health changes of a finished run from all its events (offline ``analyze``).

    ``last_step`` is the run's last step (quiet periods that end by then count); ``params`` go to
    :class:`Health`.
    """
    return Health(**params).update(events, step=last_step)
