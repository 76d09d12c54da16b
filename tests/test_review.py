"""`jalign review`: table tests of the pure Markdown builder, and the real command on a temp git + DVC
repository with two commits whose params, metrics and plots differ (dvc and vl-convert for real)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from commands import main as cli
from commands.review import (
    MARKER,
    Plot,
    build_review,
    changed_plots,
    ci_overlap,
    delta,
    eval_section,
    fmt,
    plot_error_note,
)

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"]


def d(old, new):
    """One dvc diff entry."""
    entry = {"old": old, "new": new}
    if isinstance(old, int | float) and isinstance(new, int | float):
        entry["diff"] = new - old
    return entry


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0.697708, "0.6977"),
        (2781.5, "2781.5"),
        (-0.00001, "-1e-05"),
        (5e-06, "5e-06"),
        (0.0, "0"),
        (-0.00004, "-4e-05"),
        (-0.00000000001, "-1e-11"),
        (3, "3"),
        (True, "true"),
        ("a|b", "a\\|b"),
        (["q_proj", "v_proj"], '["q_proj","v_proj"]'),
        (float("nan"), "nan"),
    ],
)
def test_fmt(value, text):
    assert fmt(value) == text


@pytest.mark.parametrize(
    ("old", "new", "text"),
    [
        (0.5, 0.62, "+0.12"),
        (0.7, 0.65, "-0.05"),
        (1, 1, "="),
        (None, 3, "—"),
        ("sigmoid", "ipo", "—"),
        ("a", "a", "="),
    ],
)
def test_delta(old, new, text):
    assert delta(old, new) == text


@pytest.mark.parametrize(
    ("old", "new", "overlap"),
    [
        ((0.40, 0.60), (0.55, 0.70), True),
        ((0.40, 0.50), (0.50, 0.70), True),  # touching ends overlap
        ((0.40, 0.50), (0.51, 0.70), False),
        ((0.51, 0.70), (0.40, 0.50), False),  # a drop as well as a rise
        ((0.30, 0.80), (0.45, 0.50), True),  # one inside the other
        ((None, None), (0.5, 0.6), None),  # new candidate: nothing to compare
    ],
)
def test_ci_overlap(old, new, overlap):
    assert ci_overlap(*old, *new) is overlap


def test_eval_rows_parse_dotted_names_and_skip_unchanged_cells():
    metrics = {
        "candidates.qwen2.5-7b.ja_eval.score": d(0.40, 0.42),
        "candidates.qwen2.5-7b.ja_eval.ci_low": d(0.35, 0.37),
        "candidates.qwen2.5-7b.ja_eval.ci_high": d(0.45, 0.47),
        "candidates.qwen2.5-7b.ja_eval.style_controlled.score": d(0.38, 0.41),
        "candidates.dpo.ja_eval.score": d(0.5, 0.5),
        "candidates.dpo.ja_eval.ci_low": d(0.4, 0.4),
        "candidates.dpo.ja_eval.ci_high": d(0.6, 0.6),
        "candidates.dpo.ja_eval.wins": d(10, 12),
    }
    rows, used = eval_section(metrics)
    assert rows == [
        [
            "`qwen2.5-7b`",
            "`ja_eval`",
            "0.4 → 0.42",
            "+0.02",
            "[0.35, 0.45]",
            "[0.37, 0.47]",
            "yes",
            "0.38 → 0.41",
        ]
    ]
    assert "candidates.dpo.ja_eval.wins" not in used and "candidates.dpo.ja_eval.score" in used


def full_metrics() -> dict:
    return {
        "metrics/eval.json": {
            "candidates.dpo.ja_eval.score": d(0.50, 0.62),
            "candidates.dpo.ja_eval.ci_low": d(0.45, 0.58),
            "candidates.dpo.ja_eval.ci_high": d(0.55, 0.66),
            "candidates.dpo.ja_eval.wins": d(10, 14),
            "judge_reliability.swap_agreement": d(0.8, 0.9),
        },
        "metrics/judge.json": {
            "agreement_rate": d(0.15, 0.4),
            "position_bias_rate": d(0.52, 0.52),
            "invalid_rate": d(0.0, 0.0),
            "length_bias": d(0.5, 0.5),
            "tie_rate": d(0.04, 0.04),
        },
        "metrics/dpo.json": {
            "eval_loss": d(0.6977, 0.65),
            "train_loss": d(0.64, 0.64),
            "loss_type": d("sigmoid", "ipo"),
            "provenance.git_commit": d("aaa", "bbb"),
        },
        "metrics/classifier/e5-small.json": {"pairwise_accuracy": d(0.5, 0.75), "f1": d(0.5, 0.5)},
        "metrics/instructions.json": {
            "funnel.curated": d(15, 15),
            "funnel.self_instruct_generated": d(16, 16),
        },
        "metrics/preferences.json": {"rows.pairwise_train": d(2, 2)},
    }


def summary_metrics() -> dict:
    return {
        "score": d(48.75, 61.25),
        "score_lo": d(40.0, 58.75),
        "score_hi": d(57.5, 66.25),
        "if_base": d(6.94, 6.94),
        "if_cand": d(8.33, 12.5),
        "if_gain": d(1.39, 5.56),
        "if_lo": d(-4.17, 1.39),
        "if_hi": d(6.94, 9.72),
        "if_p": d(0.727, 0.031),
        "judge_agree": d(0.8, 0.9),
        "usd": d(0.0, 0.0),
    }


def test_build_review_leads_with_the_headline_then_the_judges_then_the_rest_collapsed():
    params = {"params.yaml": {"dpo.beta": d(0.01, 0.1), "dpo.loss": d("sigmoid", "ipo")}}
    # dvc's JSON lists keys in its own order: the comment follows the summary's (score first).
    metrics = {"metrics/summary.json": dict(reversed(summary_metrics().items())), **full_metrics()}
    metrics["metrics/eval.json"] |= {
        "judge_reliability.ja_eval.invalid_rate": d(0.0, 0.0),
        "judge_reliability.ja_eval.swap_agreement": d(0.8, 0.55),
    }
    md = build_review(params, metrics, [Plot("DPO loss", "review/dpo-loss.png")], "origin/main", "HEAD")
    assert md.startswith(MARKER + "\n## jalign review: `origin/main` → `HEAD`")
    assert "Params changed: `dpo.beta` 0.01 → 0.1, `dpo.loss` sigmoid → ipo" in md
    headline = md.split("### Headline", 1)[1].split("###", 1)[0]
    # The estimate carries its CI; CIs apart, and a paired CI above 0, are called out.
    assert (
        "| Evaluation score (baseline = 50) | 48.75 [40, 57.5] | 61.25 [58.75, 66.25] | +12.5 |"
        " **CIs apart: a real change** |" in headline
    )
    assert "| IFEval paired gain (points) | 1.39 [-4.17, 6.94] | 5.56 [1.39, 9.72] | +4.17 |" in headline
    assert "**CI excludes 0**; McNemar p = 0.031" in headline
    assert "| IFEval strict, baseline (%) | 6.94 | 6.94 | = |" in headline  # unchanged, still shown
    assert "score_lo" not in headline and "if_p" not in headline  # folded into their estimate's row
    labels = [line.split(" | ")[0].lstrip("| ") for line in headline.splitlines() if line.startswith("| ")]
    assert labels[1:4] == ["Evaluation score (baseline = 50)", "IFEval strict, baseline (%)",
                           "IFEval strict, candidate (%)"]  # fmt: skip
    assert md.index("### Headline") < md.index("### Did the judge hold up?") < md.index("<details>")
    judges = md.split("### Did the judge hold up?", 1)[1].split("<details>", 1)[0]
    assert "| evaluation `ja_eval` | agreement | 0.8 → 0.55 | -0.25 | ⚠ below 0.6" in judges
    assert "| evaluation `ja_eval` | invalid | 0 → 0 | = |  |" in judges  # unchanged: shown too
    assert judges.index("| evaluation `ja_eval` | agreement") < judges.index(
        "| evaluation `ja_eval` | invalid"
    )
    assert "| preference pairs | agreement | 0.15 → 0.4 | +0.25 | ⚠ below 0.6" in judges
    assert "| preference pairs | position bias | 0.52 → 0.52 | = |" in judges
    rest = md.split("<details>", 1)[1]
    assert "<summary>Params (2 changed)</summary>" in rest and "| `dpo.beta` | 0.01 | 0.1 |" in rest
    assert "| `dpo` | `ja_eval` | 0.5 → 0.62 | +0.12 | [0.45, 0.55] | [0.58, 0.66] | **no** | — |" in rest
    assert "| `eval_loss` | 0.6977 → 0.65 | -0.0477 |" in rest and "| `train_loss`" not in rest
    assert "| `e5-small` | `pairwise_accuracy` | 0.5 → 0.75 | +0.25 |" in rest
    assert "Unchanged: Data funnel." in rest
    other = rest.split("Other changed metrics", 1)[1]
    assert other.startswith(" (2)")  # wins and loss_type; not the commit, not unchanged f1
    assert "| `metrics/dpo.json` | `loss_type` | sigmoid → ipo | — |" in other
    assert "| `metrics/eval.json` | `candidates.dpo.ja_eval.wins` | 10 → 14 | +4 |" in other
    assert "git_commit" not in md and "`f1`" not in md and "tie_rate" not in md
    assert "<summary>Changed plots (1)</summary>\n\n![DPO loss](review/dpo-loss.png)" in md
    assert md.rstrip().endswith("`reports/index.html`.")


def test_plot_errors_read_as_sentences_not_python_dicts():
    missing = {"name": "Eval score", "rev": "abc123", "source": "data/eval/plots/scores.json",
               "type": "FileNotFoundError", "msg": "[Errno 2] No such file or directory"}  # fmt: skip
    note = plot_error_note(missing)
    assert (
        note
        == "plot data `data/eval/plots/scores.json` does not exist at `abc123` (added or removed by this change)"
    )
    other = plot_error_note({"source": "p.json", "rev": "r", "type": "JSONDecodeError", "msg": "bad"})
    assert other == "plot data `p.json` at `r` could not be read (JSONDecodeError: bad)"
    assert "{" not in plot_error_note({"rev": "r"}) and plot_error_note("x") == "plots: x"


def test_build_review_without_changes_or_files():
    md = build_review({}, {}, [], "a", "b")
    assert "No param changed." in md
    for absent in ("Evaluation scores", "Unchanged", "<details>", "Changed plots"):
        assert absent not in md


def test_changed_plots_compares_rows_per_revision():
    def plot(rows):
        return [{"type": "vega", "revisions": ["a", "b"], "content": {"data": {"values": rows}}}]

    same = [{"step": "0", "v": "1", "rev": "a"}, {"step": "0", "v": "1", "rev": "b"}]
    differ = [{"step": "0", "v": "1", "rev": "a"}, {"step": "0", "v": "2", "rev": "b"}]
    only_new = [{"step": "0", "v": "1", "rev": "b"}]
    data = {"data": {"same": plot(same), "differ": plot(differ), "new": plot(only_new),
                     "img": [{"type": "image", "revisions": ["a"], "url": "x.png"}]}}  # fmt: skip
    assert [pid for pid, _ in changed_plots(data, "a", "b")] == ["differ", "new"]


# --- the real command on a temp repository ------------------------------------------------------------


def eval_metrics(dpo: tuple[float, float, float]) -> dict:
    score, low, high = dpo
    cell = {"score": score, "ci_low": low, "ci_high": high, "style_controlled": {"score": score - 0.02},
            "wins": 12, "ties": 3, "losses": 5, "invalid": 0}  # fmt: skip
    return {"candidates": {"dpo": {"ja_eval": cell}}, "judge_reliability": {"swap_agreement": 0.8}}


def write_revision(repo: Path, beta: float, dpo_eval: tuple, eval_loss: float, losses: list[float]) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"dpo": {"beta": beta, "loss": "sigmoid"}}))
    (repo / "metrics" / "eval.json").write_text(json.dumps(eval_metrics(dpo_eval)))
    (repo / "metrics" / "dpo.json").write_text(json.dumps({"eval_loss": eval_loss, "train_loss": 0.6}))
    (repo / "plots" / "loss.tsv").write_text(
        "step\tloss\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(losses))
    )


@pytest.fixture
def review_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    (repo / "plots").mkdir()
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")

    def sh(*args):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)

    sh(*GIT, "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "config", "core.analytics", "false")
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "metrics": ["metrics"],
                "plots": [
                    {"Loss curve": {"x": "step", "y": {"plots/loss.tsv": "loss"}}},
                    {"plots/flat.tsv": {"x": "step", "y": "v"}},  # the same at both commits
                ],
            }
        )
    )
    (repo / "plots" / "flat.tsv").write_text("step\tv\n0\t1\n1\t2\n")
    write_revision(repo, 0.01, (0.50, 0.45, 0.55), 0.70, [0.7, 0.6])
    sh("git", "add", "-A")
    sh(*GIT, "commit", "-qm", "base")
    write_revision(repo, 0.1, (0.62, 0.58, 0.66), 0.65, [0.7, 0.5, 0.4])
    sh("git", "add", "-A")
    sh(*GIT, "commit", "-qm", "head")
    monkeypatch.chdir(repo)
    return repo


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG whose every chunk CRC checks out (a truncated file fails)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    return struct.unpack(">II", data[16:24])


def test_review_command_on_two_commits(review_repo: Path):
    result = CliRunner().invoke(cli, ["review", "--base", "HEAD~1", "--head", "HEAD", "--out", "out/review.md",
                                      "--out-dir", "out/review"])  # fmt: skip
    assert result.exit_code == 0, result.output
    md = result.output
    assert md == (review_repo / "out" / "review.md").read_text(encoding="utf-8")
    assert "| `dpo.beta` | 0.01 | 0.1 |" in md
    assert (
        "| `dpo` | `ja_eval` | 0.5 → 0.62 | +0.12 | [0.45, 0.55] | [0.58, 0.66] | **no** | 0.48 → 0.6 |" in md
    )
    assert "CIs overlap" in md
    assert "| `eval_loss` | 0.7 → 0.65 | -0.05 |" in md
    assert "| eval.json | `judge_reliability.swap_agreement` | 0.8 → 0.8" not in md  # unchanged
    assert "![Loss curve](review/loss-curve.png)" in md  # relative to the Markdown file
    assert "flat" not in md  # unchanged plot: not rendered
    assert sorted(p.name for p in (review_repo / "out" / "review").iterdir()) == ["loss-curve.png"]
    width, height = png_size(review_repo / "out" / "review" / "loss-curve.png")
    assert width > 100 and height > 100


def test_review_against_the_workspace(review_repo: Path):
    (review_repo / "metrics" / "dpo.json").write_text(json.dumps({"eval_loss": 0.5, "train_loss": 0.6}))
    result = CliRunner().invoke(cli, ["review", "--base", "HEAD", "--out-dir", "rv"])
    assert result.exit_code == 0, result.output
    assert "`HEAD` → `workspace`" in result.output and "| `eval_loss` | 0.65 → 0.5 | -0.15 |" in result.output
    assert "No param changed." in result.output and "Changed plots" not in result.output


def test_review_errors(review_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    result = CliRunner().invoke(cli, ["review", "--base", "no-such-rev"])
    assert result.exit_code != 0 and "unknown git revision 'no-such-rev'" in result.output
    outside = tmp_path / "plain"
    outside.mkdir()
    subprocess.run([*GIT, "init", "-q"], cwd=outside, check=True)
    monkeypatch.chdir(outside)
    result = CliRunner().invoke(cli, ["review", "--base", "HEAD"])
    assert result.exit_code != 0 and "not inside a DVC repository" in result.output


def test_workflow_parses():
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "review.yml").read_text(encoding="utf-8"))
    assert "pull_request" in flow[True]  # YAML 1.1 reads the key `on` as True
    steps = flow["jobs"]["review"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    script = "\n".join(step.get("run", "") for step in steps)
    assert "jalign review --base origin/${{ github.base_ref }} --head HEAD --out review.md" in script
    assert "dvc pull" in script and "cml comment update" in script
    assert "secrets." not in script  # secrets reach steps through env only, never inlined into a script


def test_verifiable_instruction_figures_get_their_own_table():
    evals = {
        "ifeval.ifeval-ja.models.base.strict.prompt.accuracy": d(6.94, 6.94),
        "ifeval.ifeval-ja.models.qwen2.5-7b.strict.prompt.accuracy": d(18.06, 22.22),
        "ifeval.ifeval-ja.paired.qwen2.5-7b.strict.prompt.diff": d(11.11, 15.28),
        "ifeval.ifeval-ja.paired.qwen2.5-7b.strict.prompt.ci_low": d(2.74, 5.56),
        "ifeval.ifeval-ja.paired.qwen2.5-7b.strict.prompt.improved": d(10, 13),
        "ifeval.ifeval-ja.models.base.per_instruction.strict.ja:punctuation:no_comma.accuracy": d(35.7, 40.0),
    }
    md = build_review({}, {"metrics/eval.json": evals}, [], "a", "b")
    table = md.split("<summary>Verifiable instructions", 1)[1].split("</details>", 1)[0]
    assert "| `ifeval.ifeval-ja.paired.qwen2.5-7b.strict.prompt.diff` | 11.11 → 15.28 | +4.17 |" in table
    assert "| `ifeval.ifeval-ja.paired.qwen2.5-7b.strict.prompt.ci_low` | 2.74 → 5.56 | +2.82 |" in table
    assert "models.qwen2.5-7b.strict.prompt.accuracy" in table
    assert "models.base.strict" not in table  # unchanged
    # counts and per-id detail are not headline figures: they stay in the details
    assert "improved" not in table and "per_instruction" not in table
    assert "per_instruction" in md.split("<details>", 1)[1]
