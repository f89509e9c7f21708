"""How much warning can any detector give on the lab's gpt-instability breaks? A bound from the LR.

Every lab gpt-instability run breaks (or not) because its learning rate crossed the model's
stability edge: the LR is the only knob that differs between a run that diverges and one that
trains, besides the seed. So take each labelled break (divergence or spike, the runs the truth
benchmark's lab target counts) and ask where the run stood ``--lead`` steps before its onset:

* its LR then, from its own logged ``opt/lr`` (before step 0: the run had not started);
* the highest LR that a run of the same arm (same qk_norm) labelled ``none`` held for at least
  ``--lead`` logged steps in a row without breaking. The z_loss 1e-4 runs join their qk_norm arm:
  their LRs at onset lie inside the z_loss-0 arm's range (``bench/results/gpt_lr_threshold.md``), and
  no z_loss run trained, so they have no healthy run of their own.

If the first is at or below the second, then at the moment a warning was due the run sat at an LR
that the same model, same recipe, is known to train through for that long. A detector that warns
there must tell the two apart from the run's state alone (weights, optimiser moments, its loss and
internals so far), not from the LR: the LR says "safe". That is the hard part of the lab target
(>= 90% warned with a median lead >= 100 steps), counted here run by run. Beside each break stands
what foreshock did on it, read from the truth benchmark's per-run outcomes (``--truth``, written by
``python bench/truth.py``): the default set's first warning and the health's first step off healthy.

    python bench/lead_ceiling.py --out bench/results/lead_ceiling.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import foreshock

HERE = Path(__file__).resolve().parent
RUNS = HERE / "lab_runs"
TRUTH = HERE / "results" / "truth.json"
CONTESTANTS = ("foreshock default set", "foreshock health (watch or worse)")
BREAKS = ("divergence", "nan", "spike")


def held_lr(lrs: np.ndarray, n: int) -> float:
    """The highest LR a run stayed at or above for ``n`` consecutive logged points (the lab logs every step)."""
    if len(lrs) < n:
        return float("nan")
    windows = np.lib.stride_tricks.sliding_window_view(lrs, n)
    return float(np.max(np.min(windows, axis=1)))


def outcomes(truth: Path) -> dict[str, dict[str, dict[str, object]]]:
    """contestant -> run name -> the truth benchmark's outcome (``first_warning``, ``lead``, ...)."""
    if not truth.exists():
        return {}
    contestants = json.loads(truth.read_text())["datasets"]["lab"]["contestants"]
    return {c: {o["run"].split("/", 1)[1]: o for o in contestants[c]["outcomes"]}
            for c in CONTESTANTS if c in contestants}


def table(lead: int) -> tuple[list[dict[str, object]], dict[bool, tuple[float, str]], list[str]]:
    index = json.loads((RUNS / "runs.json").read_text())
    runs = []
    recipes: dict[str, list[str]] = {}
    for r in index["runs"]:
        if r["workload"] != "gpt-instability":
            continue
        run = foreshock.read(RUNS / "gpt-instability" / f"{r['run']}.csv.gz")
        steps, lrs = run.series("opt/lr")
        cfg = r["config"]
        recipe = (f"lr {cfg['lr']:g}, qk_norm {str(cfg['qk_norm']).lower()}, z_loss {cfg['z_loss']:g}, "
                  f"warmup {cfg['warmup']}, {cfg['steps']} steps")
        recipes.setdefault(recipe, []).append(r["label"]["event"])
        runs.append({"run": r["run"], "arm": bool(cfg["qk_norm"]), "event": r["label"]["event"],
                     "onset": r["label"]["onset_step"], "steps": steps, "lrs": lrs})
    safe: dict[bool, tuple[float, str]] = {}
    for x in runs:
        if x["event"] == "none":
            h = held_lr(x["lrs"], lead)
            if x["arm"] not in safe or h > safe[x["arm"]][0]:
                safe[x["arm"]] = (h, x["run"])
    out = []
    for x in runs:
        if x["event"] not in BREAKS or x["onset"] is None:
            continue
        due = int(x["onset"]) - lead
        lr_due = float(x["lrs"][np.searchsorted(x["steps"], due)]) if due >= 0 else None
        lr_on = float(x["lrs"][np.searchsorted(x["steps"], x["onset"])])
        ceiling = safe.get(x["arm"], (float("nan"), ""))[0]
        out.append({"run": x["run"], "arm": x["arm"], "event": x["event"], "onset": x["onset"], "due": due,
                    "lr_due": lr_due, "lr_onset": lr_on, "safe": ceiling, "steps": x["steps"], "lrs": x["lrs"],
                    "before_start": due < 0,
                    "at_safe_lr": lr_due is not None and lr_due <= ceiling})
    out.sort(key=lambda x: (x["arm"], x["run"]))
    splits = [f"{recipe}: " + ", ".join(f"{events.count(e)} {e}" for e in sorted(set(events)))
              for recipe, events in sorted(recipes.items()) if len(set(events)) > 1]
    return out, safe, splits


def where(x: dict[str, object]) -> str:
    return ("before step 0" if x["before_start"] else "at a safe LR" if x["at_safe_lr"]
            else "above every healthy run's LR")


def _lead(o: dict[str, object] | None) -> str:
    if o is None:
        return "-"
    if o.get("first_warning") is None:
        return "none"
    kind = (o.get("first") or {}).get("kind", "?")
    return f"{o['first_warning']} ({o['lead']:+d}, {kind})"


def headroom(x: dict[str, object], o: dict[str, object] | None) -> float | None:
    """1 - (LR at the first warning) / (LR at the onset), for a run warned at or before its onset."""
    if o is None or o.get("lead") is None or o["lead"] < 0:
        return None
    lr = float(x["lrs"][np.searchsorted(x["steps"], o["first_warning"])])
    return 1.0 - lr / float(x["lr_onset"])


def markdown(rows: list[dict[str, object]], safe: dict, splits: list[str], lead: int, command: str,
             seen: dict[str, dict[str, dict[str, object]]]) -> str:
    n = len(rows)
    start = sum(bool(x["before_start"]) for x in rows)
    at_safe = sum(bool(x["at_safe_lr"]) for x in rows)
    hard = start + at_safe
    need = int(np.ceil(0.9 * n))
    above = [x for x in rows if where(x) == "above every healthy run's LR"]
    flat = sum(x["lr_due"] == x["lr_onset"] for x in above)
    lines = [
        f"# Lead ceiling: where each lab break stood {lead} steps before its onset",
        "",
        f"Produced by `{command}`. Reads the committed `bench/lab_runs` (no training).",
        "",
        f"For every lab `gpt-instability` run labelled divergence, nan or spike ({n} runs): its LR {lead} steps "
        f"before the labelled onset, beside the highest LR that a run of the same qk_norm arm labelled "
        f"`none` (z_loss runs join their arm) held for {lead} logged steps in a row. *At a safe LR* means the first is at or below the second: "
        f"when a {lead}-step warning was due, the same recipe is known to train through that LR.",
        "",
        "| qk_norm | highest LR held by a healthy run | that run |",
        "|---|---|---|",
    ]
    for arm, (h, run) in sorted(safe.items()):
        lines.append(f"| {arm} | {h:.3f} | {run} |")
    default, health = (seen.get(c, {}) for c in CONTESTANTS)
    lines += ["", f"| run | label | onset | LR at onset | LR at onset - {lead} | healthy ceiling of its arm | "
              "where the warning was due | default set: first warning (lead) | health: first step off healthy (lead) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        ceiling = "-" if np.isnan(x["safe"]) else f"{x['safe']:.3f}"
        lr_due = "-" if x["lr_due"] is None else f"{x['lr_due']:.3f}"
        lines.append(f"| {x['run']} | {x['event']} | {x['onset']} | {x['lr_onset']:.3f} | {lr_due} | {ceiling} | "
                     f"{where(x)} | {_lead(default.get(x['run']))} | {_lead(health.get(x['run']))} |")
    if seen:
        lines += ["", f"By where the warning was due: runs warned at or before the onset, and warned {lead}+ steps "
                  "ahead, by foreshock's default set and its health. *LR headroom*: 1 - (LR at the first warning) / "
                  "(LR at the onset), over the runs warned at or before the onset: how far below the LR that broke "
                  "the run the warning came (0 when the LR was already held at its peak).", "",
                  f"| where the {lead}-step warning was due | runs | default: warned | default: {lead}+ ahead | "
                  f"default: lead median | default: LR headroom median | health: warned | health: {lead}+ ahead | "
                  "health: lead median | health: LR headroom median |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for w in ("before step 0", "at a safe LR", "above every healthy run's LR", "all"):
            sel = [x for x in rows if w == "all" or where(x) == w]
            if not sel:
                continue
            cells = []
            for got in (default, health):
                ls = [got[x["run"]]["lead"] for x in sel
                      if x["run"] in got and got[x["run"]].get("lead") is not None and got[x["run"]]["lead"] >= 0]
                room = [h for x in sel if (h := headroom(x, got.get(x["run"]))) is not None]
                cells += [f"{len(ls)}/{len(sel)}", f"{sum(v >= lead for v in ls)}/{len(sel)}",
                          f"{np.median(ls):.0f}" if ls else "-", f"{np.median(room):.1%}" if room else "-"]
            lines.append(f"| {w} | {len(sel)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"**{hard}/{n}** breaks had their {lead}-step warning due before the run started ({start}) or at an LR a "
        f"healthy run of the same arm trains through ({at_safe}). The target asks for {need}/{n} warned, so at "
        f"least {max(0, need - (n - hard))} of these {hard} must be told apart from the healthy runs by the run's "
        f"state alone, {lead} steps ahead, while the LR reads safe. Besides, the same recipe splits by seed "
        f"({'; '.join(splits)}), so a state-only warning that far ahead has to predict which seed breaks.",
        "",
        f"Where the warning was due above every healthy run's LR ({len(above)} breaks, {flat} of them at an LR "
        f"held flat over the last {lead} steps before the onset), the run usually spikes and recovers, or its "
        "loss climbs and falls back, for a while before the loss stays up for good: the first warning there is "
        "that spike or climb, and the lead counts the steps until the labelled onset.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lead", type=int, default=100, help="the lead asked for, in steps")
    ap.add_argument("--truth", type=Path, default=TRUTH, help="the truth benchmark's json (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    args = ap.parse_args()
    command = "python bench/lead_ceiling.py" + (f" --lead {args.lead}" if args.lead != 100 else "") + \
        (f" --out {args.out}" if args.out else "")
    rows, safe, splits = table(args.lead)
    text = markdown(rows, safe, splits, args.lead, command, outcomes(args.truth))
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
