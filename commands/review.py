"""`jalign review`: one Markdown comment for a pull request from `dvc params diff`, `dvc metrics diff` and
`dvc plots diff`, with the changed plots rendered to PNG offline (vl-convert) beside it.

`build_review` is a pure function of the parsed `--json` outputs (table-tested); the rest is thin I/O.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jalign.charts import vegalite_to_png
from jalign.records import atomic_path
from stages.summary import HEADLINE

# dvc's `--json` diff shape: {file: {flattened.key: {"old": x, "new": y, "diff": d}}}
Diff = dict[str, dict[str, dict[str, Any]]]

MARKER = "<!-- jalign-review -->"  # lets a CI step find and edit its own earlier comment
EVAL_FILE = "metrics/eval.json"
JUDGE_FILE = "metrics/judge.json"
DPO_FILE = "metrics/dpo.json"
JUDGE_KEYS = ("agreement_rate", "position_bias_rate", "invalid_rate", "length_bias")
DPO_KEYS = ("train_loss", "eval_loss", "eval_reward_accuracy", "eval_reward_margin")
# Flattened eval keys ("candidates.<cand>.<set>.score"). The candidate name may contain dots
# ("qwen2.5-7b"), the set name may not; the lazy `cand` keeps "<set>.style_controlled.score" whole.
EVAL_KEY = re.compile(
    r"^candidates\.(?P<cand>.+?)\.(?P<set>[^.]+)\.(?P<field>(?:style_controlled\.)?(?:score|ci_low|ci_high))$"
)
# Verifiable-instruction figures of eval.json: each model's accuracy and each candidate's paired
# difference (with its CI and McNemar's p), strict and loose, prompt- and instruction-level.
IFEVAL_KEY = re.compile(
    r"^ifeval\.[^.]+\.(?:models\..+?\.(?:strict|loose)\.(?:prompt|instruction)\.accuracy"
    r"|paired\..+?\.(?:strict|loose)\.(?:prompt\.(?:diff|ci_low|ci_high|mcnemar_p)|instruction\.diff))$"
)
CLASSIFIER_FILE = re.compile(r"^metrics/classifier/(?P<name>[^/]+)\.json$")
FUNNEL = {"metrics/instructions.json": "funnel.", "metrics/preferences.json": "rows."}
# The dvc of jalign's own environment, whether or not that environment's bin/ is on PATH.
DVC = [sys.executable, "-m", "dvc"]
NOISE = {"provenance.git_commit"}  # changes on every run: never news on its own


@dataclass(frozen=True)
class Plot:
    """A rendered plot: its DVC id and the PNG path as the Markdown links it."""

    title: str
    link: str


# ---------------------------------------------------------------------------------------------------------
# Pure Markdown building


def fmt(value: Any) -> str:
    """A table cell: numbers to 4 decimals (3 significant digits below 0.001), missing as an em dash,
    `|` escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3g}"  # learning rates and the like: 5e-06, never a rounded 0
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value.replace("|", "\\|").replace("\n", " ")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def delta(old: Any, new: Any) -> str:
    """Signed change; `=` when unchanged, em dash when either side is missing or not a number."""
    if old == new and old is not None:
        return "="
    if not (is_number(old) and is_number(new)):
        return "—"
    change = new - old
    return ("+" if change > 0 else "") + fmt(change)


def ci_overlap(old_low: Any, old_high: Any, new_low: Any, new_high: Any) -> bool | None:
    """Whether two confidence intervals overlap; None when either is missing."""
    if not all(is_number(v) for v in (old_low, old_high, new_low, new_high)):
        return None
    return old_low <= new_high and new_low <= old_high


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def changed(entry: dict[str, Any]) -> bool:
    return entry.get("old") != entry.get("new")


def eval_section(metrics: dict[str, dict[str, Any]]) -> tuple[list[list[str]], set[str]]:
    """Rows (candidate, set, score base → head, Δ, both CIs, overlap, style-controlled score) for every
    cell whose score or CI changed, and the keys they used. Unchanged sides come from `--all`."""
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    used = set()
    for key, entry in metrics.items():
        match = EVAL_KEY.match(key)
        if match and match["set"] != "style_controlled":
            cells.setdefault((match["cand"], match["set"]), {})[match["field"]] = entry
            used.add(key)
    rows = []
    for (cand, eval_set), f in sorted(cells.items()):
        if not any(changed(e) for e in f.values()):
            continue
        score, low, high = f.get("score", {}), f.get("ci_low", {}), f.get("ci_high", {})
        overlap = ci_overlap(low.get("old"), high.get("old"), low.get("new"), high.get("new"))
        styled = f.get("style_controlled.score")
        rows.append(
            [
                f"`{cand}`",
                f"`{eval_set}`",
                *change_cells(score),
                interval(low.get("old"), high.get("old")),
                interval(low.get("new"), high.get("new")),
                {True: "yes", False: "**no**", None: "—"}[overlap],
                change_cells(styled)[0] if styled else "—",
            ]
        )
    return rows, used


def interval(low: Any, high: Any) -> str:
    return "—" if low is None and high is None else f"[{fmt(low)}, {fmt(high)}]"


def change_cells(entry: dict[str, Any]) -> list[str]:
    old, new = entry.get("old"), entry.get("new")
    return [f"{fmt(old)} → {fmt(new)}", delta(old, new)]


def metric_rows(keys: dict[str, dict[str, Any]], wanted: list[str], label: str = "") -> list[list[str]]:
    """Rows for the changed keys among `wanted`, in that order; a `label` fills a first column."""
    return [
        [*([label] if label else []), f"`{key}`", *change_cells(keys[key])]
        for key in wanted
        if key in keys and changed(keys[key])
    ]


@dataclass
class Group:
    """A headline table: shown when a row changed, else named on the "Unchanged" line if present."""

    title: str
    header: list[str]
    rows: list[list[str]]
    present: bool  # its metrics exist at either revision
    note: str = ""


SUMMARY_FILE = "metrics/summary.json"
# metrics/summary.json's keys (stages/summary.py) as the comment names them, in its order.
HEADLINE_LABELS = {
    "score": "Evaluation score (baseline = 50)",
    "if_base": "IFEval strict, baseline (%)",
    "if_cand": "IFEval strict, candidate (%)",
    "if_gain": "IFEval paired gain (points)",
    "judge_agree": "Judge swap agreement",
    "pairs": "Preference pairs kept",
    "train_loss": "DPO train loss",
    "eval_loss": "DPO eval loss",
    "rm_acc": "Classifier pairwise accuracy",
    "usd": "USD spent",
    "rows_lost": "Rows lost to failures",
}
# Figures shown inside another row: the CIs and p next to their estimate.
FOLDED = {"score_lo", "score_hi", "if_lo", "if_hi", "if_p"}
# A judge whose verdicts flip this often when the answers swap places, or that this often answers
# nothing parseable, is mostly noise: the comment flags it rather than letting its scores stand silently.
MIN_AGREEMENT = 0.6
MAX_INVALID = 0.05
EVAL_JUDGE_KEY = re.compile(r"^judge_reliability\.(?P<set>[^.]+)\.(?P<field>[a-z_]+)$")
EVAL_JUDGE_FIELDS = {"swap_agreement": "agreement", "position_bias": "position bias",
                     "invalid_rate": "invalid", "length_bias": "length bias"}  # fmt: skip
PREFERENCE_JUDGE_FIELDS = {"agreement_rate": "agreement", "position_bias_rate": "position bias",
                           "invalid_rate": "invalid", "length_bias": "length bias"}  # fmt: skip


def side(entry: dict[str, Any], which: str, low: dict[str, Any], high: dict[str, Any]) -> str:
    """An estimate with its CI at one revision: `21.25 [8.75, 33.75]`."""
    value = entry.get(which)
    if value is None:
        return "—"
    if low.get(which) is None and high.get(which) is None:
        return fmt(value)
    return f"{fmt(value)} {interval(low.get(which), high.get(which))}"


def headline_rows(summary: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per headline figure: base, head, Δ and what the CIs say (estimates carry theirs)."""
    rows = []
    order = {key: i for i, key in enumerate(HEADLINE)}  # the summary's own order, not dvc's
    for key, entry in sorted(summary.items(), key=lambda kv: (order.get(kv[0], order["rm_acc"]), kv[0])):
        if key in FOLDED:
            continue
        label = HEADLINE_LABELS.get(key) or HEADLINE_LABELS["rm_acc"] + f" `{key.removeprefix('rm_acc_')}`"
        note = ""
        if key == "score":
            low, high = summary.get("score_lo", {}), summary.get("score_hi", {})
            overlap = ci_overlap(low.get("old"), high.get("old"), low.get("new"), high.get("new"))
            note = {True: "CIs overlap: within the noise", False: "**CIs apart: a real change**", None: ""}[
                overlap
            ]
        elif key == "if_gain":
            low, high = summary.get("if_lo", {}), summary.get("if_hi", {})
            new_low, new_high, p = low.get("new"), high.get("new"), summary.get("if_p", {}).get("new")
            if is_number(new_low) and is_number(new_high):
                beyond = new_low > 0 or new_high < 0
                note = ("**CI excludes 0**" if beyond else "CI includes 0: within the noise") + (
                    f"; McNemar p = {fmt(p)}" if p is not None else ""
                )
        else:
            low = high = {}
        rows.append([label, side(entry, "old", low, high), side(entry, "new", low, high),
                     delta(entry.get("old"), entry.get("new")), note])  # fmt: skip
    return rows


def judge_flag(field: str, value: Any) -> str:
    if not is_number(value):
        return ""
    if field in ("swap_agreement", "agreement_rate") and value < MIN_AGREEMENT:
        return f"⚠ below {MIN_AGREEMENT}: verdicts flip when the answers swap"
    if field == "invalid_rate" and value > MAX_INVALID:
        return f"⚠ above {MAX_INVALID}: many unparseable verdicts"
    return ""


def judge_rows(evals: dict[str, dict[str, Any]], judge: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Both judges' reliability at both revisions, changed or not: the reader asks this every time."""
    rows = []
    fields = list(EVAL_JUDGE_FIELDS)  # agreement first: the figure that says most
    found = [(m, entry) for key, entry in evals.items() if (m := EVAL_JUDGE_KEY.match(key))]
    matches = sorted(
        ((m, e) for m, e in found if m["field"] in fields),
        key=lambda me: (me[0]["set"], fields.index(me[0]["field"])),
    )
    for match, entry in matches:
        if match["field"] in EVAL_JUDGE_FIELDS:
            label, field = f"evaluation `{match['set']}`", match["field"]
            flag = judge_flag(field, entry.get("new"))
            rows.append([label, EVAL_JUDGE_FIELDS[field], *change_cells(entry), flag])
    for field, label in PREFERENCE_JUDGE_FIELDS.items():
        if field in judge:
            flag = judge_flag(field, judge[field].get("new"))
            rows.append(["preference pairs", label, *change_cells(judge[field]), flag])
    return rows


def collapsed(title: str, body: str) -> str:
    return f"<details><summary>{title}</summary>\n\n{body}\n\n</details>"


def build_review(
    params: Diff, metrics: Diff, plots: Sequence[Plot], base: str, head: str, notes: Sequence[str] = ()
) -> str:
    """The whole comment. `metrics` is `dvc metrics diff --all --json`: unchanged metrics are included so
    that CIs are complete and the headline shows every figure. It leads with the headline figures and
    their CIs, then whether the judges held up; everything else is collapsed."""
    used: dict[str, set[str]] = {name: set() for name in metrics}
    summary = metrics.get(SUMMARY_FILE, {})
    used.setdefault(SUMMARY_FILE, set()).update(summary)
    evals = metrics.get(EVAL_FILE, {})
    eval_rows, eval_keys = eval_section(evals)
    eval_judge = sorted(k for k in evals if k.startswith("judge_reliability."))
    eval_ifeval = sorted(k for k in evals if IFEVAL_KEY.match(k))
    judge = metrics.get(JUDGE_FILE, {})
    classifiers = {m["name"]: name for name in sorted(metrics) if (m := CLASSIFIER_FILE.match(name))}
    funnel_keys = {
        name: sorted(k for k in metrics.get(name, {}) if k.startswith(p)) for name, p in FUNNEL.items()
    }
    used.setdefault(EVAL_FILE, set()).update(eval_keys, eval_judge, eval_ifeval)
    used.setdefault(JUDGE_FILE, set()).update(JUDGE_KEYS)
    used.setdefault(DPO_FILE, set()).update(DPO_KEYS)
    for name in classifiers.values():
        used[name].add("pairwise_accuracy")
    for name, keys in funnel_keys.items():
        used.setdefault(name, set()).update(keys)

    changed_params = [
        (f"`{key}`" if name == "params.yaml" else f"`{name}`: `{key}`", e)
        for name, keys in sorted(params.items())
        for key, e in sorted(keys.items())
        if changed(e)
    ]
    params_line = (
        "Params changed: "
        + ", ".join(f"{key} {fmt(e.get('old'))} → {fmt(e.get('new'))}" for key, e in changed_params[:6])
        + (f" and {len(changed_params) - 6} more (below)" if len(changed_params) > 6 else "")
        if changed_params
        else "No param changed."
    )
    sections = [f"{MARKER}\n## jalign review: `{base}` → `{head}`", params_line]
    if summary:
        sections.append(
            "### Headline\n\n"
            + table(["figure", "base", "head", "Δ", "noise"], headline_rows(summary))
            + "\n\nCIs are 95% bootstrap intervals; a difference whose intervals overlap (score) or whose "
            "paired interval includes 0 (IFEval) is within the evaluation noise."
        )
    judges = judge_rows(evals, judge)
    if judges:
        sections.append(
            "### Did the judge hold up?\n\n"
            + table(["judge", "figure", "base → head", "Δ", ""], judges)
            + f"\n\nagreement: verdicts that survive swapping the two answers (want ≥ {MIN_AGREEMENT}); "
            "position bias: first-position wins beyond chance; invalid: unparseable verdicts, never counted "
            "as a win; length bias: the longer answer's win share."
        )

    groups = [
        Group(
            "Evaluation scores, every candidate and set",
            [
                "candidate",
                "set",
                "score base → head",
                "Δ",
                "CI base",
                "CI head",
                "CIs overlap",
                "style-controlled",
            ],
            eval_rows,
            bool(eval_keys),
            "style-controlled: the score with answer length and markdown controlled for.",
        ),
        Group(
            "Verifiable instructions (IFEval, checked by program)",
            ["metric", "base → head", "Δ"],
            metric_rows(evals, eval_ifeval),
            bool(eval_ifeval),
            "paired.<candidate>: the candidate minus the baseline on the same prompts, in points, with its "
            "paired bootstrap CI; a ci_low above 0 is a gain beyond the noise.",
        ),
        Group(
            "DPO",
            ["metric", "base → head", "Δ"],
            metric_rows(metrics.get(DPO_FILE, {}), list(DPO_KEYS)),
            DPO_FILE in metrics,
        ),
        Group(
            "Classifier pairwise accuracy",
            ["encoder", "metric", "base → head", "Δ"],
            [
                row
                for enc, name in classifiers.items()
                for row in metric_rows(metrics[name], ["pairwise_accuracy"], f"`{enc}`")
            ],
            bool(classifiers),
        ),
        Group(
            "Data funnel",
            ["file", "count", "base → head", "Δ"],
            [
                row
                for name, keys in funnel_keys.items()
                for row in metric_rows(metrics.get(name, {}), keys, Path(name).name)
            ],
            any(name in metrics for name in FUNNEL),
        ),
    ]
    if changed_params:
        param_rows = [[key, fmt(e.get("old")), fmt(e.get("new"))] for key, e in changed_params]
        title = f"Params ({len(changed_params)} changed)"
        sections.append(collapsed(title, table(["param", "base", "head"], param_rows)))
    for g in groups:
        if g.rows:
            body = table(g.header, g.rows) + (f"\n\n{g.note}" if g.note else "")
            sections.append(collapsed(f"{g.title} ({len(g.rows)} changed)", body))
    unchanged = [g.title for g in groups if g.present and not g.rows]
    if unchanged:
        sections.append("Unchanged: " + ", ".join(unchanged) + ".")

    other = [
        [f"`{name}`", f"`{key}`", *change_cells(entry)]
        for name, keys in sorted(metrics.items())
        for key, entry in sorted(keys.items())
        if key not in used[name] and key not in NOISE and changed(entry)
    ]
    if other:
        sections.append(
            collapsed(
                f"Other changed metrics ({len(other)})", table(["file", "metric", "base → head", "Δ"], other)
            )
        )
    if plots:
        sections.append(
            collapsed(
                f"Changed plots ({len(plots)})",
                "\n\n".join(f"![{escape_title(p.title)}]({p.link})" for p in plots),
            )
        )
    if notes:
        sections.append("\n".join(f"> {note}" for note in notes))
    sections.append(
        "Who made these figures (git commit, packages, models, usage, licences): `metrics/*.meta.json`; "
        "the data behind them (prompts, both answers, the judge's words): `reports/index.html`."
    )
    return "\n\n".join(sections) + "\n"


def changed_plots(plots_json: dict[str, Any], base: str, head: str) -> list[tuple[str, dict[str, Any]]]:
    """Vega-Lite specs (with their data inline) of the plots whose rows differ between the revisions."""
    found = []
    for plot_id, entries in plots_json.get("data", {}).items():
        for entry in entries:
            if entry.get("type") != "vega" or not isinstance(entry.get("content"), dict):
                continue  # image plots have no data to compare or render
            rows = entry["content"].get("data", {}).get("values", [])
            by_rev: dict[str, list[dict[str, Any]]] = {base: [], head: []}
            for row in rows:
                rest = {k: v for k, v in row.items() if k != "rev"}
                by_rev.setdefault(row.get("rev", head), []).append(rest)
            if by_rev[base] != by_rev[head]:
                found.append((plot_id, entry["content"]))
    return found


def plot_error_note(error: Any) -> str:
    """One readable line for an entry of `dvc plots diff --json`'s `errors`: a plot file that one
    revision lacks (a plot added or removed by the change) is said so, not shown as a Python dict."""
    if not isinstance(error, dict):
        return f"plots: {error}"
    source, rev = error.get("source") or error.get("name") or "?", error.get("rev") or "?"
    if error.get("type") == "FileNotFoundError":
        return f"plot data `{source}` does not exist at `{rev}` (added or removed by this change)"
    detail = f"{error.get('type') or 'error'}: {error.get('msg') or ''}".rstrip(": ")
    return f"plot data `{source}` at `{rev}` could not be read ({detail})"


def escape_title(text: str) -> str:
    return re.sub(r"([\[\]])", r"\\\1", text)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


# ---------------------------------------------------------------------------------------------------------
# I/O


def run_dvc(args: list[str], cwd: Path) -> Any:
    """Run `dvc ARGS --json` and parse its output; dvc's own error message on failure."""
    proc = subprocess.run([*DVC, *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.lstrip().startswith("ERROR"):
        message = proc.stderr.strip() or proc.stdout.strip()
        raise click.ClickException(f"`dvc {' '.join(args)}` failed: {message}")
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"`dvc {' '.join(args)} --json` printed no JSON: {exc}") from exc


def repo_root() -> Path:
    proc = subprocess.run([*DVC, "root"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise click.ClickException(
            f"not inside a DVC repository ({proc.stderr.strip() or 'dvc root failed'})"
        )
    return (Path.cwd() / proc.stdout.strip()).resolve()


def check_rev(rev: str, root: Path) -> None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise click.ClickException(f"unknown git revision {rev!r} (fetch it first, e.g. git fetch origin)")


def render_png(spec: dict[str, Any], path: Path) -> None:
    png = vegalite_to_png(spec)  # offline, Japanese labels in a CJK font
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


@click.command("review")
@click.option("--base", required=True, help="base revision (e.g. origin/main)")
@click.option("--head", default=None, help="head revision [default: the workspace]")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), default=None, help="also write the Markdown here"
)
@click.option("--out-dir", type=click.Path(file_okay=False), default="review", show_default=True,
              help="folder for the rendered plot PNGs")  # fmt: skip
def main(base: str, head: str | None, out: str | None, out_dir: str) -> None:
    """Print one Markdown pull-request comment: changed params, headline metrics base → head (evaluation
    scores with CI overlap, judge reliability, DPO, classifiers, data funnel) and changed plots."""
    root = repo_root()
    for rev in (base, head):
        if rev is not None:
            check_rev(rev, root)
    revs = [base] if head is None else [base, head]
    head_label = head or "workspace"
    params = run_dvc(["params", "diff", *revs], root)
    metrics = run_dvc(["metrics", "diff", *revs, "--all"], root)
    plots_json = run_dvc(["plots", "diff", *revs], root)

    notes = [plot_error_note(error) for error in plots_json.get("errors", []) or []]
    link_base = Path(out).resolve().parent if out else Path.cwd()
    plots, taken = [], set()
    for plot_id, spec in changed_plots(plots_json, base, head_label):
        name = slug(plot_id)
        while name in taken:
            name += "-1"
        taken.add(name)
        path = Path(out_dir).resolve() / f"{name}.png"
        render_png(spec, path)
        plots.append(Plot(plot_id, Path(os.path.relpath(path, link_base)).as_posix()))

    markdown = build_review(params, metrics, plots, base, head_label, notes)
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(markdown, encoding="utf-8")
    click.echo(markdown, nl=False)
