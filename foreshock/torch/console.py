"""One line per event as it fires, printed with rich beside the training loop's own output."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from foreshock.events import Event
from foreshock.report.evidence import format_evidence
from foreshock.report.terminal import SEVERITY_STYLE

__all__ = ["EventPrinter", "event_line"]

_LATENCY_KEYS = ("flush_latency_steps", "flush_every")  # shown as one phrase at the end


def event_line(event: Event) -> Text:
    """``foreshock WARNING spike train/loss step 812 (onset 810): message  key=value ...  (seen 3 steps later)``."""
    text = Text("foreshock ", style="dim")
    text.append(event.severity.upper(), style=SEVERITY_STYLE.get(event.severity, ""))
    text.append(f" {event.kind}", style="bold")
    if event.metric:
        text.append(f" {event.metric}")
    text.append(f" step {event.step}")
    if event.onset_step != event.step:
        text.append(f" (onset {event.onset_step})")
    text.append(f": {event.message}")
    evidence = format_evidence(event.evidence, skip=("metric", *_LATENCY_KEYS), limit=5)
    if evidence:
        text.append(f"  {evidence}", style="dim")
    late = event.evidence.get("flush_latency_steps")
    if late:
        text.append(f"  (seen {late} step{'s' if late != 1 else ''} later)", style="dim")
    return text


class EventPrinter:
    """Prints events to ``console`` (standard error by default, away from the loop's own prints).

    Warnings and critical events are printed one by one. Info events are routine (a per-layer
    norm that is NaN on a skipped step), and a model with many layers can fire dozens at once: of
    those that arrive together, the first ``info_shown`` are printed and the rest counted.
    """

    def __init__(self, console: Console | None = None, *, info_shown: int = 3):
        self.console = console or Console(stderr=True)
        self.info_shown = info_shown

    def __call__(self, events: Sequence[Event]) -> None:
        info = 0
        for event in events:
            if event.severity == "info":
                info += 1
                if info > self.info_shown:
                    continue
            self.console.print(event_line(event), soft_wrap=True)
        if info > self.info_shown:
            more = info - self.info_shown
            self.console.print(Text(f"foreshock {more} more info event{'s' if more != 1 else ''} "
                                    f"(all of them are in .events and the store)", style="dim"), soft_wrap=True)
