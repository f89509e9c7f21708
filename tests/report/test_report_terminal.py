import math

from report_runs import make_run
from rich.console import Console

from foreshock.analysis import Analysis
from foreshock.events import Event
from foreshock.report import format_evidence, format_value, group_events, print_analyses, print_analysis
from foreshock.report.terminal import SHOWN_PER_GROUP


def render(*analyses, width=200):
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    print_analyses(analyses, console)
    return console.export_text()


def test_report_shows_run_metrics_skipped_verdict_and_events(analysis):
    text = render(analysis)
    assert "run blowup" in text and "/data/blowup.csv" in text and "csv-long" in text
    for name in ("train/loss", "val/loss", "opt/lr", "opt/grad_norm"):
        assert name in text
    assert "20 non-finite from step 280" in text  # where the loss stops being finite
    assert "2 record(s)" in text and "line 7" in text  # the skipped records and where
    assert "CRITICAL" in text and "first critical: nan at step 290" in text
    assert "train/loss is NaN: the run has diverged." in text
    assert "ratio=4.214 median=0.5123 threshold=3" in text  # evidence, 4 significant digits


def test_nan_and_inf_values_and_evidence_render_without_crashing():
    run = make_run(n=40)
    events = [Event("d", "nan", "critical", 35, 30, "NaN", {"metric": "opt/grad_norm", "value": math.nan,
                                                              "peak": math.inf, "low": -math.inf})]
    text = render(Analysis(run, events), width=80)
    assert "value=nan peak=inf low=-inf" in " ".join(text.split())


def test_repeated_events_are_summed_up_after_the_first_few(analysis):
    text = render(analysis)
    shown = [line for line in text.splitlines() if "small spike at" in line]
    assert len(shown) == SHOWN_PER_GROUP
    assert f"{10 - SHOWN_PER_GROUP} more spike event(s) from loss_spike on train/loss" in text


def test_groups_put_the_worst_severity_first_then_the_earliest():
    a = Event("a", "spike", "info", 5, 5, "m", {"metric": "x"})
    b = Event("b", "nan", "critical", 50, 50, "m", {"metric": "x"})
    c = Event("c", "spike", "warning", 40, 40, "m", {"metric": "x"})
    d = Event("c", "spike", "warning", 10, 10, "m", {"metric": "x"})
    assert group_events([a, b, c, d]) == [[b], [d, c], [a]]


def test_quiet_run_and_empty_run_say_so():
    quiet = render(Analysis(make_run(n=30, with_nonfinite=False), []))
    assert "no events" in quiet and "non-finite" not in quiet
    text = render(Analysis(make_run(n=0, name="empty"), []))
    assert "none (the run has no points)" in text


def test_print_analysis_uses_a_default_console(capsys, analysis):
    print_analysis(analysis)
    assert "run blowup" in capsys.readouterr().out


def test_format_value_and_evidence():
    assert format_value(3.0) == "3" and format_value(2.5e-7) == "2.5e-07" and format_value(123.456) == "123.5"
    assert format_value([1.0, 2.0, 3.0, 4.0, 5.0]) == "[1, 2, 3, 4, ...]"
    assert format_value(True) == "true" and format_value(None) == "none"
    assert format_evidence({"metric": "m", "a": 1, "b": 2, "c": 3}, limit=2) == "a=1 b=2 (+1 more)"
    assert format_evidence({"window": {"lo": 0.1234567, "hi": 2}}) == "window={lo=0.1235 hi=2}"
