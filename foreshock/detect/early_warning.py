"""EarlyWarningDetector: critical slowing down in a metric's fluctuations, before the run breaks.

Before a run diverges or spikes, the fluctuations of its loss and gradient norm around their slow
trend tend to grow and change character: the optimiser is losing stability, and a small kick takes
longer to die out (or starts to ring). :class:`~foreshock.series.ews.EarlyWarning` measures this on
the log of each metric (so that a loss falling tenfold does not by itself shrink its variance a
hundredfold): every ``stride`` points it detrends the last ``window`` points with a Gaussian kernel
and appends their variance, lag-1 autocorrelation and skewness to a history of ``history``
evaluations. The detector fires when the variance has been rising steadily over that history
(Kendall tau of at least ``threshold``) and has grown by at least ``min_ratio`` from its lowest
point in it. One event per episode: it re-arms once the trend has faded below half the threshold.

The evidence holds the three indicators, the Kendall tau of each, the variance ratio, every
threshold and the windows. The autocorrelation and skewness are reported, not required: on the
shared real logs the warning that came well ahead of a labelled spike had the classical signature
(lag-1 autocorrelation rising to 0.99), but others came with it falling (a ringing, period-two
oscillation rather than a slowing one). Non-finite and non-positive values are skipped (see
:class:`~foreshock.detect.nonfinite.NonFiniteDetector`). Windows count points of each metric.

Calibration on the 119 labelled shared runs (defaults): no healthy run gets an event (0/75, also
at ``threshold=0.7``, or ``min_ratio`` 2 or 4; but 8/75 with ``min_points=300``: a loss's relative
noise grows during its first descent); of the 18 spike/divergence runs, 8 get an event, only one
of them before the labelled step (152 steps ahead of an edge-of-stability spike). A warning that is
late nine times in ten is not one, so the events are ``info`` by default, for the run health summary
to weigh; ``severity="warning"`` stays within the false-alarm budget on that set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, each_positive, is_fresh, merge_by_step, step_by_step
from foreshock.detect.base import Detector
from foreshock.events import SEVERITIES, Event, Severity
from foreshock.series.ews import gaussian_residuals, indicator_rows, kendall_rows, kendall_tau

__all__ = ["EarlyWarningDetector"]

_KEYS = ("variance", "ac1", "skew")
_CHUNK = 4096  # windows per numpy batch in scan: bounds its memory


class EarlyWarningDetector(Detector):
    """Rising fluctuations of a metric around its trend, a warning sign of instability (info).

    Parameters
    ----------
    metrics : tuple of str
        Positive series to watch, each on its own. ``opt/grad_norm`` works too but is not watched by
        default: on a healthy million-step log with heavy-tailed gradient norms (``bench/make_log.py``)
        it gave 156 events where the loss gave none, and on the shared runs it caught nothing.
    window : int
        Points per indicator window.
    bandwidth : float
        Gaussian detrending bandwidth in points (ewstools' definition: quartiles at +/- bandwidth / 4).
    stride : int
        Points between two evaluations of the indicators.
    history : int
        Evaluations in the Kendall-tau trend; the trend spans ``window + stride * (history - 1)`` points.
    threshold : float
        Kendall tau of the variance history needed to fire.
    min_ratio : float
        The latest variance must be at least this multiple of the lowest one in the history.
    min_points : int
        Points of the metric seen before the detector may fire: the first descent of a run, where the
        relative fluctuations of the loss grow as it falls, is not a sign of instability.
    severity : str
        Severity of the events: ``"info"`` by default (see the calibration above).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> det = EarlyWarningDetector(metrics=("train/loss",))
    >>> noise = np.concatenate([np.full(600, 0.01), np.linspace(0.01, 0.2, 400)])
    >>> loss = 2.0 * np.exp(noise * rng.standard_normal(1000))
    >>> events = [e for i, x in enumerate(loss) for e in det.update(i, {"train/loss": x})]
    >>> [(e.kind, 600 < e.step < 1000) for e in events]
    [('early_warning', True)]
    """

    name = "early_warning"

    def __init__(self, metrics: tuple[str, ...] = ("train/loss", "val/loss"),
                 window: int = 100, bandwidth: float = 20.0, stride: int = 10, history: int = 20,
                 threshold: float = 0.8, min_ratio: float = 3.0, min_points: int = 500,
                 severity: Severity = "info"):
        super().__init__()
        if window < 3 or history < 3 or stride < 1 or bandwidth <= 0:
            raise ValueError(f"need window >= 3, history >= 3, stride >= 1 and bandwidth > 0, got "
                             f"{window=}, {history=}, {stride=}, {bandwidth=}")
        if not -1 <= threshold <= 1 or min_ratio < 1 or severity not in SEVERITIES:
            raise ValueError(f"need -1 <= threshold <= 1, min_ratio >= 1 and a severity in {SEVERITIES}, got "
                             f"{threshold=}, {min_ratio=}, {severity=}")
        self.metrics = tuple(metrics)
        self.window = window
        self.bandwidth = bandwidth
        self.stride = stride
        self.history = history
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.min_points = min_points
        self.severity = severity
        self._add_state("_tracks", {})

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        return each_positive(self.metrics, step, values, self._point)

    @staticmethod
    def _new_track() -> dict[str, Any]:
        return {"buffer": [], "count": 0, "steps": [], **{k: [] for k in _KEYS}, "active": False}

    def _point(self, metric: str, step: int, x: float) -> Event | None:
        track = self._tracks.get(metric)
        if track is None:
            track = self._tracks[metric] = self._new_track()
        buf = track["buffer"]
        buf.append(x)
        if len(buf) > self.window:
            del buf[0]
        track["count"] += 1
        if track["count"] < self.window or (track["count"] - self.window) % self.stride:
            return None
        segment = np.log(np.array(buf, dtype=np.float64))[None, :]
        var, ac1, skew = self._indicators(segment)
        for key, value in (("steps", step), ("variance", var[0]), ("ac1", ac1[0]), ("skew", skew[0])):
            track[key].append(_plain(value))
            if len(track[key]) > self.history:
                del track[key][0]
        if len(track["steps"]) < self.history:
            return None
        variances = np.array(track["variance"], dtype=np.float64)
        tau = float(kendall_rows(variances[None, :])[0])
        firing, _ = self._fires(tau, float(var[0]), float(variances.min()))
        firing = firing and track["count"] >= self.min_points
        was_active = track["active"]
        track["active"] = firing or (was_active and tau >= self.threshold / 2)
        if not firing or was_active:
            return None
        return self._warning(metric, step, x, track)

    # -- the indicators, the test and the event, shared by both paths -------------------------------
    def _indicators(self, log_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return indicator_rows(gaussian_residuals(log_windows, self.bandwidth))

    def _fires(self, tau: Any, variance: Any, lowest: Any) -> tuple[Any, Any]:
        """Whether the trend fires, and the variance ratio: for scalars or whole arrays alike."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(lowest > 0, variance / np.where(lowest > 0, lowest, 1.0), np.inf)
        firing = (tau >= self.threshold) & (ratio >= self.min_ratio)
        if np.ndim(firing) == 0:
            return bool(firing), float(ratio)
        return firing, ratio

    def _warning(self, metric: str, step: int, x: float, track: Mapping[str, list]) -> Event:
        hist = {k: np.array(track[k], dtype=np.float64) for k in _KEYS}
        taus = {k: kendall_tau(v) for k, v in hist.items()}
        variance = float(hist["variance"][-1])
        lowest = int(np.argmin(hist["variance"]))
        _, ratio = self._fires(taus["variance"], variance, float(hist["variance"][lowest]))
        onset = int(track["steps"][lowest])
        return self._event(
            "early_warning", self.severity, step, onset,
            f"The fluctuations of {metric} around its trend have grown {ratio:.3g}x since step {onset} "
            f"(Kendall tau {taus['variance']:.2f} over the last {self.history} windows of {self.window} "
            f"points): a sign of growing instability.",
            metric=metric, value=x, variance=variance, ac1=track["ac1"][-1], skew=track["skew"][-1],
            tau_variance=_plain(taus["variance"]), tau_ac1=_plain(taus["ac1"]), tau_skew=_plain(taus["skew"]),
            threshold=self.threshold, variance_ratio=_plain(ratio), min_ratio=self.min_ratio,
            window=self.window, bandwidth=self.bandwidth, stride=self.stride, history=self.history,
            min_points=self.min_points, scale="log")

    # -- vectorised replay: all windows at once, with the same arithmetic --------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        return merge_by_step([self._scan_metric(m, *as_arrays(series, m)) if m in series else []
                              for m in self.metrics])

    def _scan_metric(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(x) & (x > 0)
        steps, x = steps[keep], x[keep]
        n, w, h = len(x), self.window, self.history
        if n == 0:
            return []
        track = self._tracks[metric] = self._new_track()
        track["buffer"] = [float(v) for v in x[-w:]]
        track["count"] = n
        if n < w:
            return []
        ends = np.arange(w - 1, n, self.stride)  # index of the last point of each evaluated window
        windows = np.lib.stride_tricks.sliding_window_view(x, w)[ends - w + 1]
        rows = [np.empty(len(ends)) for _ in _KEYS]
        for lo in range(0, len(ends), _CHUNK):
            part = self._indicators(np.log(windows[lo:lo + _CHUNK]))
            for out, values in zip(rows, part, strict=True):
                out[lo:lo + _CHUNK] = values
        ind = dict(zip(_KEYS, rows, strict=True))
        events: list[Event] = []
        if len(ends) >= h:
            hist = np.lib.stride_tricks.sliding_window_view(ind["variance"], h)
            tau = np.concatenate([kendall_rows(hist[lo:lo + _CHUNK]) for lo in range(0, len(hist), _CHUNK)])
            firing, _ = self._fires(tau, ind["variance"][h - 1:], hist.min(axis=1))
            firing &= ends[h - 1:] + 1 >= self.min_points
            starts, active = [], False
            for k, (fires, t) in enumerate(zip(firing.tolist(), tau.tolist(), strict=True)):
                if fires and not active:
                    starts.append(k + h - 1)
                active = fires or (active and t >= self.threshold / 2)
            for k in starts:
                past = {"steps": steps[ends[k - h + 1:k + 1]].tolist(),
                        **{key: [_plain(v) for v in ind[key][k - h + 1:k + 1]] for key in _KEYS}}
                events.append(self._warning(metric, int(steps[ends[k]]), float(x[ends[k]]), past))
            track["active"] = active
        last = slice(max(len(ends) - h, 0), len(ends))
        track["steps"] = steps[ends[last]].tolist()
        for key in _KEYS:
            track[key] = [_plain(v) for v in ind[key][last]]
        return events


def _plain(x: float) -> float | int | None:
    """A JSON-able number: NaN and infinities (an undefined statistic) become None."""
    x = x.item() if isinstance(x, np.generic) else x
    return x if math.isfinite(x) else None
