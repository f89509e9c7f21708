"""Medians, ratios and the Markdown table of ``bench/replay.py``'s measurements."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

REFERENCE = "foreshock"  # the row the ratios divide by
TARGET_REPLAY_S = 3.0  # 1M steps x 5 metrics, all default detectors, one core
TARGET_VS_TRAINSPOTTER = 10.0
SPIKE_SLACK = 2  # a flag within this many steps of a planted spike counts as finding it


def _med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _row(runs: list[dict[str, Any]], keep: set[str] | None = None) -> dict[str, Any]:
    """Median over repetitions of one tool's timings; ``keep`` restricts to those files."""
    def files(r):
        return [f for f in r["files"] if "error" not in f and (keep is None or f["path"] in keep)]

    read = [sum(f["read_s"] for f in files(r)) for r in runs]
    analyze = [sum(f["analyze_s"] for f in files(r)) for r in runs]
    cpu = [sum(f["read_cpu_s"] + f["analyze_cpu_s"] for f in files(r)) for r in runs]
    first = runs[0]
    return {
        "reps": len(runs),
        "import_s": _med([r["import_s"] for r in runs]),
        "read_s": _med(read),
        "analyze_s": _med(analyze),
        "total_s": _med([a + b for a, b in zip(read, analyze, strict=True)]),
        "total_cpu_s": _med(cpu),
        "analyze_cpu_s": _med([sum(f["analyze_cpu_s"] for f in files(r)) for r in runs]),
        "process_wall_s": _med([r["process_wall_s"] for r in runs]),
        "peak_mib": _med([r["maxrss_kib"] / 1024 for r in runs]),
        "import_mib": _med([r["maxrss_import_kib"] / 1024 for r in runs]),
        "after_read_mib": _med([max((f.get("maxrss_after_read_kib", 0) for f in r["files"]), default=0) / 1024
                                for r in runs]),
        "code": [dict(c) for c in {tuple(sorted(r.get("code", {}).items())) for r in runs}],
        "files_ok": len(files(first)),
        "errors": {f["path"]: f["error"] for f in first["files"] if "error" in f},
        "flags": sum(f.get("n_flags", 0) for f in files(first)),
        "flag_counts": _merge([f.get("flag_counts", {}) for f in files(first)]),
    }


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _ratios(rows: dict[str, dict[str, Any]]) -> None:
    ref = rows.get(REFERENCE)
    for row in rows.values():
        for key in ("total_s", "analyze_s", "read_s", "peak_mib", "total_cpu_s"):
            a, b = row.get(key), ref.get(key) if ref else None
            row[f"x_{key}"] = a / b if a is not None and b else None


def _spikes_found(runs: list[dict[str, Any]], spikes: list[int]) -> int:
    ranges = [r for f in runs[0]["files"] for r in f.get("ranges", [])]
    return sum(any(lo - SPIKE_SLACK <= s <= hi + SPIKE_SLACK for _, lo, hi in ranges) for s in spikes)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Medians and ratios per workload; drops the bulky per-event ranges from ``result``."""
    summary: dict[str, Any] = {}
    if "synthetic" in result:
        syn = result["synthetic"]
        rows = {name: _row(v["runs"]) for name, v in syn["rows"].items()}
        for name, v in syn["rows"].items():
            rows[name]["input"] = v["input"]
            rows[name]["planted_spikes_flagged"] = _spikes_found(v["runs"], syn["meta"]["spikes"])
        _ratios(rows)
        cli = {t: {"command": v["command"], "wall_s": _med([r["wall_s"] for r in v["runs"]]),
                   "peak_mib": _med([r["maxrss_kib"] / 1024 for r in v["runs"]]), "reps": len(v["runs"]),
                   "skipped": v.get("skipped")}
               for t, v in syn.get("cli", {}).items()}
        fs, ts = rows.get(REFERENCE), rows.get("trainspotter")
        targets = {}
        if fs and fs["flag_counts"] is not None:
            targets["replay_s"] = fs["analyze_s"]
            targets["replay_cpu_s"] = fs["analyze_cpu_s"]
            targets["read_plus_replay_s"] = fs["total_s"]
            targets["replay_within_3s"] = fs["analyze_s"] <= TARGET_REPLAY_S
            targets["read_plus_replay_within_3s"] = fs["total_s"] <= TARGET_REPLAY_S
        if fs and ts:
            targets["vs_trainspotter_total"] = ts["x_total_s"]
            targets["vs_trainspotter_analysis"] = ts["x_analyze_s"]
            targets["vs_trainspotter_cpu"] = ts["x_total_cpu_s"]
            targets["at_least_10x_total"] = ts["x_total_s"] >= TARGET_VS_TRAINSPOTTER
        summary["synthetic"] = {"rows": rows, "cli": cli, "targets": targets, "profile": syn.get("profile"),
                                "spikes": syn["meta"]["spikes"], "points": syn["meta"]["points"],
                                "steps": syn["meta"]["params"]["steps"]}
    if "shared" in result:
        sh = result["shared"]
        ok_sets = []
        for v in sh["rows"].values():
            first = v["runs"][0]["files"]
            ok_sets.append({_key(f["path"]) for f in first if "error" not in f})
        common = set.intersection(*ok_sets) if ok_sets else set()
        rows = {}
        for name, v in sh["rows"].items():
            keep = {f["path"] for f in v["runs"][0]["files"] if _key(f["path"]) in common}
            rows[name] = _row(v["runs"])
            rows[name]["common"] = _row(v["runs"], keep)
            rows[name]["input"] = v["input"]
        common_rows = {n: r["common"] for n, r in rows.items()}
        _ratios(common_rows)
        summary["shared"] = {"rows": rows, "logs": len(sh["logs"]), "common_logs": len(common)}
    _compact(result)
    return summary


def _compact(result: dict[str, Any]) -> None:
    """Keep in ``result`` what the JSON file needs: per repetition its totals, per log its medians."""
    for work in ("synthetic", "shared"):
        for v in result.get(work, {}).get("rows", {}).values():
            per_file: dict[str, dict[str, Any]] = {}
            for r in v["runs"]:
                r.pop("code", None)  # kept, once per distinct version, in the summary
                for f in r.pop("files"):
                    d = per_file.setdefault(_key(f["path"]), {"read_s": [], "analyze_s": [], "cpu_s": []})
                    if "error" in f:
                        d["error"] = f["error"]
                        continue
                    d["read_s"].append(f["read_s"])
                    d["analyze_s"].append(f["analyze_s"])
                    d["cpu_s"].append(f["read_cpu_s"] + f["analyze_cpu_s"])
                    d["flags"] = f["flag_counts"]
                    r["read_s"] = r.get("read_s", 0.0) + f["read_s"]
                    r["analyze_s"] = r.get("analyze_s", 0.0) + f["analyze_s"]
            for d in per_file.values():
                d["read_s"], d["analyze_s"], d["cpu_s"] = _med(d["read_s"]), _med(d["analyze_s"]), _med(d["cpu_s"])
            v["logs"] = per_file


def _key(path: str) -> str:
    """A log's identity across its ``.csv.gz`` original and its wide ``.csv`` copy."""
    p = Path(path)
    stem = p.name.removesuffix(".gz").removesuffix(".csv")
    return f"{p.parent.name}/{stem}"


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "—" if x is None else format(x, fmt)


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}×" if x >= 1.5 else f"{x:.2f}×"


SLOW_NOTE = "2 minutes, not repeated"


def _table(rows: dict[str, dict[str, Any]], extra: str | None = None, reps: int = 0) -> list[str]:
    head = ("| tool | input | read s | analyse s | read+analyse s | × time | × analyse | CPU s | × CPU | import s "
            "| peak MiB | above import MiB | × peak | flags |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        flags = ", ".join(f"{k} {v}" for k, v in r["flag_counts"].items()) or "none"
        if reps and r["reps"] < reps:
            flags += f"; {r['reps']} run(s) only (over {SLOW_NOTE})"
        if extra and extra in r:
            flags += f"; planted spikes flagged {r[extra]}"
        lines.append(f"| {name} | {r['input']} | {_f(r['read_s'])} | {_f(r['analyze_s'])} | "
                     f"{_f(r['total_s'])} | {_x(r.get('x_total_s'))} | {_x(r.get('x_analyze_s'))} | "
                     f"{_f(r['total_cpu_s'])} | {_x(r.get('x_total_cpu_s'))} | "
                     f"{_f(r['import_s'])} | {_f(r['peak_mib'], '.0f')} | {_f(r['peak_mib'] - r['import_mib'], '.0f')} | "
                     f"{_x(r.get('x_peak_mib'))} | {flags} |")
    return lines


def _profile(prof: dict[str, Any], row: dict[str, Any] | None, steps: int) -> list[str]:
    out = [f"### Where foreshock's time goes ({steps:,}-step log)", "",
           f"One run under cProfile (which slows Python-level code more than numpy calls): reading took "
           f"{prof['read']['total_s']:.2f} s, the replay {prof['analyze']['total_s']:.2f} s."]
    if row:
        out[-1] += (f" Peak memory (medians above): {row['import_mib']:.0f} MiB after the imports, "
                    f"{row['after_read_mib']:.0f} MiB once the log is read, {row['peak_mib']:.0f} MiB at the end.")
    for phase in ("read", "analyze"):
        out += ["", f"{'Reading' if phase == 'read' else 'Replay'}: functions by own time", "",
                "| function | calls | own s | cumulative s |", "|---|---|---|---|"]
        out += [f"| `{f['function']}` | {f['calls']} | {f['own_s']:.3f} | {f['cumulative_s']:.3f} |"
                for f in prof[phase]["functions"]]
    return out + [""]


def _code_note(s: dict[str, Any]) -> list[str]:
    """Whether every foreshock process measured the same code: the same digest for each module that
    any two of them loaded."""
    seen: dict[str, dict[str, set[str]]] = {}  # module -> digest -> rows
    for work in ("synthetic", "shared"):
        for name, row in s.get(work, {}).get("rows", {}).items():
            for code in row.get("code", []) if name.startswith("foreshock") else []:
                for module, digest in code.items():
                    seen.setdefault(module, {}).setdefault(digest, set()).add(f"{work}: {name}")
    changed = {m: d for m, d in seen.items() if len(d) > 1}
    if not changed:
        return [f"Every foreshock process ran the same code (each of the {len(seen)} foreshock modules they "
                "loaded had one content throughout).", ""]
    lines = [f"**foreshock's code changed while this ran**: {len(changed)} of its modules were loaded in "
             "different versions; rows that loaded different versions measure different code:"]
    for module, digests in sorted(changed.items()):
        lines.append(f"- `{module}`: " + "; ".join(f"{d} in {', '.join(sorted(r))}" for d, r in digests.items()))
    return lines + [""]


def write_markdown(result: dict[str, Any], path: Path) -> None:
    s, m = result["summary"], result["machine"]
    out = ["# Replay time and peak memory: foreshock, trainspotter, losslint", ""]
    out += [f"Measured {m['date']} with `{result['command'].strip()}` (from the repository root, with "
            f"`.venv/bin/python`); it took {result['elapsed_s'] / 60:.0f} min.", ""]
    cpu = m["cpu"]
    out += [f"- Machine: {cpu.get('model name')} (family {cpu.get('cpu family')}, model {cpu.get('model')}, "
            f"{cpu.get('cpu MHz')} MHz), {m['cores']} cores, each tool pinned to {m['pinned_to']}; "
            f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; {m['platform']}.",
            f"- foreshock {m['foreshock_env'].get('foreshock')} (commit {m['foreshock_commit']}"
            f"{', working tree modified' if m['foreshock_tree_dirty'] else ''}), Python "
            f"{m['foreshock_env']['python']}, numpy {m['foreshock_env']['numpy']}, scipy {m['foreshock_env']['scipy']}; "
            f"default detectors: {', '.join(d.split('(')[0] for d in m['foreshock_detectors']) or 'none'}.",
            f"- trainspotter {m['peers_env']['trainspotter']} and losslint {m['peers_env']['losslint']} "
            f"(`losslint[fast]`, its numpy path), Python {m['peers_env']['python']}, numpy {m['peers_env']['numpy']}.",
            f"- Each number is the median of {result['reps']} fresh processes. *read* and *analyse* are timed "
            "inside the process around the tool's own calls (imports excluded, given apart); *peak MiB* is "
            "the process's `ru_maxrss`, interpreter and imports included; *CPU s* is the process's CPU time for "
            "read + analyse, steadier than wall time when other work shares the core. × columns are tool / foreshock: "
            "above 1 means foreshock is faster or smaller.", ""]
    out += _code_note(s)
    caps = result["foreshock_caps"]
    if not caps["read_long"] or not caps["detectors"]:
        missing = [w for w, ok in (("a reader for the long CSV", caps["read_long"]),
                                   ("default detectors", caps["detectors"])) if not ok]
        out += [f"**foreshock did not yet have {' and '.join(missing)} when this was measured**; its rows are "
                "missing or cover only what existed.", ""]
    if "synthetic" in s:
        syn = s["synthetic"]
        out += [f"## {syn['steps']:,} steps × 5 metrics ({syn['points']:,} points)", "",
                "Generated by `bench/make_log.py` (seed 0): power-law loss with noise that scales with it, "
                "warm-up then cosine LR, heavy-tailed grad norm, val loss every 100 steps, train accuracy, "
                f"single-step spikes at steps {', '.join(map(str, syn['spikes']))}.", ""]
        out += _table(syn["rows"], extra="planted_spikes_flagged", reps=result["reps"]) + [""]
        t = syn["targets"]
        if "replay_s" in t:
            out += [f"- Target *replay ≤ {TARGET_REPLAY_S:g} s on one core*: foreshock's analyse (replay of the "
                    f"in-memory run through all default detectors) took {t['replay_s']:.2f} s "
                    f"({t['replay_cpu_s']:.2f} s CPU) — {'met' if t['replay_within_3s'] else 'missed'}. "
                    f"Reading the log as well: {t['read_plus_replay_s']:.2f} s, "
                    f"{'within' if t['read_plus_replay_within_3s'] else 'over'} {TARGET_REPLAY_S:g} s."]
        if "vs_trainspotter_total" in t:
            out += [f"- Target *≥ {TARGET_VS_TRAINSPOTTER:g}× faster than trainspotter*: "
                    f"{t['vs_trainspotter_total']:.1f}× on read + analyse ({t['vs_trainspotter_cpu']:.1f}× in CPU "
                    f"time), {t['vs_trainspotter_analysis']:.1f}× on analysis alone — "
                    f"{'met' if t['at_least_10x_total'] else 'missed'}."]
        if syn["cli"]:
            out += ["", "Each tool's command line, end to end (interpreter start, imports, read, analyse, "
                    "JSON report to /dev/null):", "", "| tool | command | wall s | peak MiB |", "|---|---|---|---|"]
            out += [f"| {k} | `{v['command']}` | {_f(v['wall_s'])} | {_f(v['peak_mib'], '.0f')} |"
                    if not v["skipped"] else f"| {k} | `{v['command']}` | not run: {v['skipped']} | |"
                    for k, v in syn["cli"].items()]
        out += [""]
        if syn.get("profile"):
            out += _profile(syn["profile"], syn["rows"].get(REFERENCE), syn["steps"])
    if "shared" in s:
        sh = s["shared"]
        out += [f"## Every log in `shared/data` ({sh['logs']} `*.csv.gz` runs, real training logs)", "",
                f"Totals over the {sh['common_logs']} logs every tool could read; one process per tool reads "
                "and analyses them one after another (peak memory is the largest log's).", ""]
        out += _table({n: {**r["common"], "input": r["input"]} for n, r in sh["rows"].items()},
                      reps=result["reps"]) + [""]
        for name, r in sh["rows"].items():
            if r["errors"]:
                out += [f"- {name} could not read {len(r['errors'])} log(s):"]
                out += [f"  - `{Path(p).name}`: {e[:160]}" for p, e in sorted(r["errors"].items())]
        out += [""]
    path.write_text("\n".join(out).rstrip() + "\n", encoding="utf-8")
