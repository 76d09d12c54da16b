"""jalign.scoring and `jalign score`: Arena-Hard v0.1 Bradley-Terry scores, bootstrap CIs, style control."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from commands import main as cli
from jalign.records import RecordError
from jalign.scoring import (
    STYLE_FIELDS,
    ScoringError,
    count_tokens,
    fit_elo,
    fit_style_elo,
    markdown_counts,
    read_battles,
    score_battles,
    style_metadata,
    win_rate,
)


def battle(a: str, b: str, winner: str, qid: int | str = 0, meta: dict | None = None) -> dict:
    row = {"question_id": qid, "model_a": a, "model_b": b, "winner": winner}
    if meta is not None:
        row["conv_metadata"] = meta
    return row


def flat_meta(tokens_a: int, tokens_b: int, md_a: tuple = (0, 0, 0), md_b: tuple = (0, 0, 0)) -> dict:
    """conv_metadata with markdown counts given as (headers, list items, bold) per side."""
    meta = {"sum_assistant_a_tokens": tokens_a, "sum_assistant_b_tokens": tokens_b}
    for i, (_, field_a, field_b) in enumerate(STYLE_FIELDS[1:]):
        meta[field_a], meta[field_b] = md_a[i], md_b[i]
    return meta


def four_models() -> list[dict]:
    """A hand-made set: 4 models, every pairing, ties of both kinds, strong verdicts repeated 3x."""
    plan = {  # (model_a, model_b): (a wins, b wins, ties, bothbad ties, strong a wins, strong b wins)
        ("base", "m1"): (5, 7, 2, 1, 1, 2),
        ("m1", "base"): (6, 3, 1, 0, 2, 0),
        ("base", "m2"): (8, 3, 2, 1, 2, 0),
        ("m2", "m1"): (2, 6, 3, 0, 0, 1),
        ("m3", "base"): (9, 4, 1, 1, 1, 1),
        ("m3", "m2"): (7, 2, 0, 2, 1, 0),
        ("m1", "m3"): (4, 5, 2, 0, 0, 1),
    }
    rows, qid = [], 0
    for (a, b), (wa, wb, t, tb, sa, sb) in plan.items():
        for winner, n, repeat in [
            ("model_a", wa, 1), ("model_b", wb, 1), ("tie", t, 1), ("tie (bothbad)", tb, 1),
            ("model_a", sa, 3), ("model_b", sb, 3),
        ]:  # fmt: skip
            for _ in range(n):
                rows += [battle(a, b, winner, qid)] * repeat
                qid += 1
    return rows


# ---------------------------------------------------------------------------------------------
# References: Arena-Hard v0.1's scikit-learn fits (utils_math.compute_mle_elo, construct_style_matrices
# + fit_bt), rewritten here over plain lists with the same matrices, labels and solver settings.
# ---------------------------------------------------------------------------------------------
def _duplicated_design(battles: list[dict], models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows twice over, +-ln(10) model columns; a win is two wins, a tie one win + one loss."""
    index = {m: i for i, m in enumerate(models)}
    doubled = battles + battles
    X = np.zeros((len(doubled), len(models)))
    for row, b in enumerate(doubled):
        X[row, index[b["model_a"]]] = math.log(10)
        X[row, index[b["model_b"]]] = -math.log(10)
    Y = np.array([b["winner"] == "model_a" for b in doubled], dtype=float)
    Y[: len(battles)] += [b["winner"].startswith("tie") for b in battles]
    return X, Y


def _anchor(coefs: np.ndarray, models: list[str], baseline: str) -> dict[str, float]:
    elo = 400 * coefs + 1000
    elo += 1000 - elo[models.index(baseline)]
    return dict(zip(models, elo.tolist(), strict=True))


def sklearn_compute_mle_elo(battles: list[dict], baseline: str) -> dict[str, float]:
    linear_model = pytest.importorskip("sklearn.linear_model")
    models = list(dict.fromkeys(m for b in battles for m in (b["model_a"], b["model_b"])))
    X, Y = _duplicated_design(battles, models)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # penalty=None is deprecated in favour of C=inf
        lr = linear_model.LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8)
        lr.fit(X, Y)
    return _anchor(lr.coef_[0], models, baseline)


def sklearn_style_fit(battles: list[dict], baseline: str) -> tuple[dict[str, float], np.ndarray]:
    """construct_style_matrices (ratio with +1, z-score with np.std) + fit_bt (sklearn default C=1)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    models = list(dict.fromkeys(m for b in battles for m in (b["model_a"], b["model_b"])))
    X, Y = _duplicated_design(battles, models)

    def total(v: int | dict) -> int:
        return v if isinstance(v, int) else sum(v.values())

    doubled = battles + battles
    a = np.array([[total(b["conv_metadata"][f]) for _, f, _ in STYLE_FIELDS] for b in doubled], dtype=float)
    b_ = np.array([[total(b["conv_metadata"][f]) for _, _, f in STYLE_FIELDS] for b in doubled], dtype=float)
    diff = (a - b_) / (a + b_ + 1)
    features = (diff - diff.mean(axis=0)) / diff.std(axis=0)
    # tol tightened from sklearn's 1e-4 so the reference sits at the optimum of the same objective
    lr = linear_model.LogisticRegression(fit_intercept=False, tol=1e-12, max_iter=10_000)
    lr.fit(np.hstack([X, features]), Y)
    return _anchor(lr.coef_[0][: len(models)], models, baseline), lr.coef_[0][len(models) :]


def log_likelihood(battles: list[dict], elo: dict[str, float]) -> float:
    """Bradley-Terry log-likelihood, ties as half a win each way, written per battle."""
    total = 0.0
    for b in battles:
        p = 1 / (1 + 10 ** ((elo[b["model_b"]] - elo[b["model_a"]]) / 400))
        y = {"model_a": 1.0, "model_b": 0.0}.get(b["winner"], 0.5)
        total += y * math.log(p) + (1 - y) * math.log(1 - p)
    return total


# ---------------------------------------------------------------------------------------------
# Point estimates
# ---------------------------------------------------------------------------------------------
def test_two_models_closed_form():
    # m against base: 7 wins, 2 ties, 3 losses over both positions -> p = (7 + 2/2) / 12 = 2/3
    rows = [battle("m", "base", "model_a")] * 4 + [battle("base", "m", "model_b")] * 3
    rows += [battle("m", "base", "tie"), battle("base", "m", "tie (bothbad)")]
    rows += [battle("m", "base", "model_b")] * 2 + [battle("base", "m", "model_a")]
    elo = fit_elo(rows, "base")
    assert elo["base"] == 1000.0
    assert elo["m"] == pytest.approx(1000 + 400 * math.log10(2), abs=1e-6)
    result = score_battles(rows, "base", bootstrap=200)
    assert result["m"]["score"] == 66.67 and result["base"]["score"] == 50.0
    assert result["base"]["ci_low"] == result["base"]["ci_high"] == 50.0
    assert result["m"]["battles"] == result["base"]["battles"] == 12
    assert win_rate(elo["m"]) == pytest.approx(200 / 3)


def test_matches_arena_hard_sklearn_compute_mle_elo():
    rows = four_models()
    ours, ref = fit_elo(rows, "base"), sklearn_compute_mle_elo(rows, "base")
    assert set(ours) == set(ref) == {"base", "m1", "m2", "m3"}
    for model in ref:
        assert ours[model] == pytest.approx(ref[model], abs=1e-3)
    scores = score_battles(rows, "base", bootstrap=50)
    for model in ref:  # Arena-Hard's get_win_rate_column: round(win rate x 100, 2)
        assert scores[model]["score"] == round(100 / (1 + 10 ** ((1000 - ref[model]) / 400)), 2)
    assert list(scores) == sorted(ref, key=ref.get, reverse=True)


def test_fit_maximises_the_likelihood():
    rows = four_models()
    elo = fit_elo(rows, "base")
    best = log_likelihood(rows, elo)
    for model in ("m1", "m2", "m3"):
        for delta in (-5.0, -0.5, 0.5, 5.0):
            assert log_likelihood(rows, {**elo, model: elo[model] + delta}) < best
        h = 1e-3  # central difference: the gradient vanishes at the MLE
        grad = (
            log_likelihood(rows, {**elo, model: elo[model] + h})
            - log_likelihood(rows, {**elo, model: elo[model] - h})
        ) / (2 * h)
        assert abs(grad) < 1e-6


def test_one_sided_models_get_finite_extreme_scores():
    rows = [battle("winner", "base", "model_a", i) for i in range(6)]
    rows += [battle("base", "winner", "model_b", i) for i in range(4)]
    rows += [battle("loser", "base", "model_b", i) for i in range(5)]
    rows += [battle("mid", "base", w, i) for i, w in enumerate(["model_a", "model_b", "tie"] * 3)]
    elo = fit_elo(rows, "base")
    assert all(math.isfinite(v) for v in elo.values())
    assert elo["winner"] > 3000 and elo["loser"] < -1000  # far out, where the MLE is infinite
    assert elo["mid"] == pytest.approx(1000.0, abs=1e-6)  # unaffected by the others
    result = score_battles(rows, "base", bootstrap=100)
    assert result["winner"]["score"] == result["winner"]["ci_low"] == 100.0
    assert result["loser"]["score"] == result["loser"]["ci_high"] == 0.0
    # every row won by model_a: one label only (scikit-learn refuses to fit); ours still scores it
    all_a = [battle("m", "base", "model_a", i) for i in range(3)]
    assert score_battles(all_a, "base", bootstrap=10)["m"]["score"] == 100.0


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------
def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rows = four_models()
    first = score_battles(rows, "base", bootstrap=300, seed=7)
    assert score_battles(rows, "base", bootstrap=300, seed=7) == first
    other = score_battles(rows, "base", bootstrap=300, seed=8)
    assert other != first and all(other[m]["score"] == first[m]["score"] for m in first)
    for model, entry in first.items():
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"], model
        assert entry["ci_low"] < entry["ci_high"] or model == "base"


def test_ci_narrows_with_more_battles():
    rows = four_models()
    small = score_battles(rows, "base", bootstrap=400)
    large = score_battles(rows * 9, "base", bootstrap=400)  # same proportions, 9x the battles
    for model in ("m1", "m2", "m3"):
        assert large[model]["score"] == small[model]["score"]
        width_small = small[model]["ci_high"] - small[model]["ci_low"]
        width_large = large[model]["ci_high"] - large[model]["ci_low"]
        assert width_large < 0.5 * width_small  # ~1/3 expected (1/sqrt(9))


def test_bootstrap_percentiles_agree_with_per_round_resampling():
    rows = four_models()
    ours = score_battles(rows, "base", bootstrap=4000, seed=1)
    # the slow way: draw the rows with replacement, refit, every round (Arena-Hard's get_bootstrap_result)
    rng = np.random.default_rng(123)
    samples = []
    for _ in range(400):
        resample = [rows[i] for i in rng.integers(0, len(rows), len(rows))]
        samples.append(fit_elo(resample, "base"))
    for model in ("m1", "m2", "m3"):
        elos = np.array([s[model] for s in samples])
        # percentile of 400 draws: standard error ~0.12 sd at 2.5%; allow 4 of them
        tolerance = 0.5 * np.std([win_rate(e) for e in elos])
        assert ours[model]["ci_low"] == pytest.approx(win_rate(np.percentile(elos, 2.5)), abs=tolerance)
        assert ours[model]["ci_high"] == pytest.approx(win_rate(np.percentile(elos, 97.5)), abs=tolerance)


def test_model_absent_from_some_resamples_still_gets_a_ci():
    rows = [*four_models(), battle("rare", "base", "model_a", "r1"), battle("base", "rare", "tie", "r2")]
    result = score_battles(rows, "base", bootstrap=300)
    rare = result["rare"]
    assert rare["battles"] == 2
    assert rare["ci_low"] is not None and rare["ci_low"] <= rare["score"] <= rare["ci_high"]


# ---------------------------------------------------------------------------------------------
# Style control
# ---------------------------------------------------------------------------------------------
def length_battles(
    strength: dict[str, float],
    length: dict[str, int],
    length_effect: float,
    n: int,
    seed: int,
    ties: float = 0.0,
):
    """Battles between random pairs: P(a wins) = sigmoid(strength gap + length_effect * length ratio).

    `ties` of the battles are ties whatever the logit: that squeezes the curve towards 1/2, which
    the logistic model does not describe, so the style test keeps them out."""
    rng = np.random.default_rng(seed)
    names = list(strength)
    rows = []
    for qid in range(n):
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        ta, tb = (int(rng.integers(length[m] // 2, length[m] * 3 // 2)) for m in (a, b))
        headers, lists, bolds = (rng.integers(0, 4, 2) for _ in range(3))
        meta = flat_meta(
            ta,
            tb,
            (int(headers[0]), int(lists[0]), {"**": int(bolds[0])}),
            (int(headers[1]), int(lists[1]), {"**": int(bolds[1]), "__": 0}),
        )
        logit = math.log(10) * (strength[a] - strength[b]) + length_effect * (ta - tb) / (ta + tb)
        u = rng.random()
        winner = (
            "tie" if u < ties else ("model_a" if rng.random() < 1 / (1 + math.exp(-logit)) else "model_b")
        )
        rows.append(battle(a, b, winner, qid, meta))
    return rows


def test_style_fit_matches_arena_hard_sklearn_fit_bt():
    rows = length_battles(
        {"base": 0, "m1": 0.2, "m2": -0.3}, {"base": 300, "m1": 500, "m2": 200}, 3.0, 300, 0, 0.1
    )
    rows += rows[:40]  # repeated rows, as strong verdicts are
    ours, coefs = fit_style_elo(rows, "base")
    ref, ref_coefs = sklearn_style_fit(rows, "base")
    for model in ref:
        assert ours[model] == pytest.approx(ref[model], abs=1e-3)
    assert list(coefs.values()) == pytest.approx(ref_coefs.tolist(), abs=1e-6)
    assert list(coefs) == ["length", "header", "list", "bold"]


def test_style_control_removes_a_pure_length_effect():
    # models differ only in how long they answer; the longer answer wins far more often
    # (12,000 battles: length and model identity overlap, so the controlled score needs data to settle)
    rows = length_battles(
        {"base": 0, "long": 0, "short": 0}, {"base": 400, "long": 700, "short": 220}, 6.0, 12000, 1
    )
    result = score_battles(rows, "base", bootstrap=200, style_control=True)
    assert result["long"]["score"] > 70 and result["short"]["score"] < 30
    for model in ("long", "short"):
        controlled = result[model]["style_controlled"]
        assert controlled["score"] == pytest.approx(50, abs=3)
        assert controlled["ci_low"] < 50 < controlled["ci_high"]
    _, coefs = fit_style_elo(rows, "base")
    assert coefs["length"] > 1.0 and max(abs(coefs[k]) for k in ("header", "list", "bold")) < 0.15


def test_style_control_keeps_a_real_strength_gap():
    rows = length_battles(
        {"base": 0, "good": 0.3, "bad": -0.3}, {"base": 300, "good": 300, "bad": 300}, 0.0, 3000, 2, 0.1
    )
    result = score_battles(rows, "base", bootstrap=200, style_control=True)
    for model in ("good", "bad"):
        assert result[model]["style_controlled"]["score"] == pytest.approx(result[model]["score"], abs=1.5)
    assert result["good"]["score"] > 60 and result["bad"]["score"] < 40


def test_constant_style_feature_is_ignored():
    # no markdown anywhere: those three features are constant (0/0 when standardised) and drop out
    rows = [battle(a, b, w, i, flat_meta(100 + 7 * i, 120)) for i, (a, b, w) in enumerate(
        [("m", "base", "model_a"), ("base", "m", "tie"), ("m", "base", "model_b"), ("base", "m", "model_b")] * 5
    )]  # fmt: skip
    elo, coefs = fit_style_elo(rows, "base")
    assert coefs["header"] == coefs["list"] == coefs["bold"] == 0.0
    assert math.isfinite(elo["m"]) and math.isfinite(coefs["length"])


def test_style_metadata_counts_markdown_outside_code_and_tokens():
    answer = (
        "# 概要\n## 詳細\n###見出しではない\n本文は**重要**です。__強調__も。\n"
        "1. 一つ目\n2. 二つ目\n- 箇条\n  * 入れ子\n"
        "```python\n# コメント\n- not a list\n**not bold**\n```\n"
    )
    meta = style_metadata(answer, "Hello world 123 です。")
    assert meta["header_count_a"] == {"h1": 1, "h2": 1, "h3": 0, "h4": 0, "h5": 0, "h6": 0}
    assert meta["list_count_a"] == {"ordered": 2, "unordered": 2}
    assert meta["bold_count_a"] == {"**": 1, "__": 1}
    assert meta["sum_assistant_b_tokens"] == 6  # Hello, world, 123, で, す, 。
    assert meta["sum_assistant_a_tokens"] == count_tokens(answer)
    assert markdown_counts("plain") == {
        k[:-2]: v for k, v in meta.items() if k.endswith("_b") and "count" in k
    }
    assert style_metadata("abc", "de", count_tokens=len)["sum_assistant_a_tokens"] == 3
    # what it builds is what style control reads
    rows = [
        battle("m", "base", w, i, style_metadata("# 見出し\n" * i, "短い"))
        for i, w in enumerate(["model_a", "model_b", "tie"] * 3)
    ]
    assert set(fit_style_elo(rows, "base")[1]) == {"length", "header", "list", "bold"}


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def write_battles(tmp_path, *rows: dict | str):
    path = tmp_path / "battles.jsonl"
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
    )
    return path


GOOD = battle("m", "base", "model_a", "q1", flat_meta(10, 20))


@pytest.mark.parametrize(
    ("bad", "style", "field"),
    [
        ({**GOOD, "winner": "A>>B"}, False, "'winner'"),
        ({k: v for k, v in GOOD.items() if k != "model_b"}, False, "'model_b'"),
        ({**GOOD, "question_id": True}, False, "'question_id'"),
        ({k: v for k, v in GOOD.items() if k != "question_id"}, False, "'question_id'"),
        ({k: v for k, v in GOOD.items() if k != "conv_metadata"}, True, "'conv_metadata'"),
        (
            {**GOOD, "conv_metadata": {**GOOD["conv_metadata"], "bold_count_b": {"**": -1}}},
            True,
            "'conv_metadata.bold_count_b'",
        ),
        (
            {
                **GOOD,
                "conv_metadata": {k: v for k, v in GOOD["conv_metadata"].items() if k != "list_count_a"},
            },
            True,
            "'conv_metadata.list_count_a'",
        ),
    ],
)
def test_bad_battle_names_file_line_and_field(tmp_path, bad, style, field):
    path = write_battles(tmp_path, GOOD, "", bad)
    with pytest.raises(RecordError) as info:
        read_battles(path, style_control=style)
    assert str(info.value).startswith(f"{path}:3: ")
    assert field in str(info.value)


def test_line_numbers_survive_a_bare_carriage_return_and_bad_bytes(tmp_path):
    # JSON allows "\r" as whitespace; a text-mode line count split there and crashed on a zip mismatch
    path = tmp_path / "battles.jsonl"
    good = json.dumps(GOOD)
    path.write_bytes(f"{good[:1]}\r{good[1:]}\n\n{good}\n".encode())
    assert read_battles(path) == [GOOD, GOOD]
    path.write_bytes(f"{good[:1]}\r{good[1:]}\n\n{json.dumps({**GOOD, 'winner': 'x'})}\n".encode())
    with pytest.raises(RecordError, match=r"battles\.jsonl:3: field 'winner'"):
        read_battles(path)
    path.write_bytes(good.encode() + b"\n\xff\n")
    with pytest.raises(RecordError, match=r"battles\.jsonl:2: not valid UTF-8"):
        read_battles(path)


def test_missing_style_fields_are_fine_without_style_control(tmp_path):
    path = write_battles(tmp_path, battle("m", "base", "tie"), battle("base", "m", "model_b", 2))
    assert len(read_battles(path)) == 2
    with pytest.raises(RecordError, match=r"battle 1: style control needs field 'conv_metadata'"):
        score_battles(read_battles(path), "base", bootstrap=5, style_control=True)


def test_unscorable_battles_are_refused():
    with pytest.raises(ScoringError, match="no battles"):
        score_battles([], "base")
    with pytest.raises(ScoringError, match="baseline 'gpt' is in no battle"):
        fit_elo([battle("m", "base", "tie")], "gpt")
    with pytest.raises(ScoringError, match="connects c, d to the baseline"):
        fit_elo([battle("m", "base", "tie"), battle("c", "d", "model_a")], "base")
    with pytest.raises(ScoringError, match="bootstrap"):
        score_battles([battle("m", "base", "tie")], "base", bootstrap=0)


# ---------------------------------------------------------------------------------------------
# jalign score
# ---------------------------------------------------------------------------------------------
def test_cli_table_and_json(tmp_path):
    path = write_battles(tmp_path, *four_models())
    runner = CliRunner()
    table = runner.invoke(cli, ["score", "--battles", str(path), "--baseline", "base", "--bootstrap", "100"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["model", "score", "95%", "CI", "battles"]
    expected = score_battles(four_models(), "base", bootstrap=100)
    assert [line.split()[0] for line in lines[1:]] == list(expected)
    m1 = expected["m1"]
    assert f"{m1['ci_low']:.2f} - {m1['ci_high']:.2f}" in next(
        line for line in lines if line.startswith("m1")
    )

    as_json = runner.invoke(
        cli, ["score", "--battles", str(path), "--baseline", "base", "--bootstrap", "100", "--json"]
    )
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == expected


def test_cli_style_control_columns(tmp_path):
    rows = length_battles({"base": 0, "long": 0}, {"base": 200, "long": 600}, 4.0, 200, 3)
    path = write_battles(tmp_path, *rows)
    args = ["score", "--battles", str(path), "--baseline", "base", "--bootstrap", "50", "--style-control"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "style-controlled" in result.output.splitlines()[0]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    assert set(data["long"]["style_controlled"]) == {"score", "ci_low", "ci_high"}


def test_cli_bad_input_is_one_line(tmp_path):
    path = write_battles(
        tmp_path, GOOD, '{"question_id": 2, "model_a": "m", "model_b": "base", "winner": "draw"}'
    )
    result = CliRunner().invoke(cli, ["score", "--battles", str(path), "--baseline", "base"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {path}:2: field 'winner' must be one of model_a, model_b, tie, tie (bothbad), got 'draw'"
    )
    no_style = write_battles(tmp_path, battle("m", "base", "tie"))
    result = CliRunner().invoke(
        cli, ["score", "--battles", str(no_style), "--baseline", "base", "--style-control"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {no_style}:1: style control needs field 'conv_metadata'")
    missing = CliRunner().invoke(cli, ["score", "--battles", str(path), "--baseline", "gpt"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: baseline 'gpt' is in no battle")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = CliRunner().invoke(cli, ["score", "--battles", str(empty), "--baseline", "base"])
    assert result.exit_code == 1 and result.output.strip() == f"Error: {empty}: no battles to score"


# ---------------------------------------------------------------------------------------------
# Self-battles: arena-hard judges the baseline against itself when it is also a judged model
# ---------------------------------------------------------------------------------------------
# Written for these tests in arena-hard-auto's battle format: 3 models x 12 questions x 2 games, the
# baseline's own games (24 rows, noisy verdicts) included, as arena-hard writes them.
SELF_BATTLES = Path(__file__).parent / "fixtures" / "battles_with_self_battles.jsonl"


def without_self_battles(battles: list[dict]) -> list[dict]:
    return [b for b in battles if b["model_a"] != b["model_b"]]


@pytest.mark.parametrize("style", [False, True])
def test_self_battles_are_left_out_of_the_fit_and_counted(style):
    battles = read_battles(SELF_BATTLES, style_control=style)
    self_battles = len(battles) - len(without_self_battles(battles))
    assert self_battles == 24
    result = score_battles(battles, "gpt-4-0314", bootstrap=50, style_control=style)
    expected = score_battles(without_self_battles(battles), "gpt-4-0314", bootstrap=50, style_control=style)
    assert result.pop("gpt-4-0314").pop("self_battles") == self_battles
    assert result == {m: e for m, e in expected.items() if m != "gpt-4-0314"}
    assert all("self_battles" not in e for e in expected.values())  # only a model that had some


def test_a_model_seen_only_against_itself_has_no_score():
    battles = [battle("m", "base", "tie"), battle("solo", "solo", "model_a")]
    with pytest.raises(ScoringError, match="'solo' battled only against itself"):
        score_battles(battles, "base", bootstrap=5)


def test_cli_reports_ignored_self_battles():
    args = ["score", "--battles", str(SELF_BATTLES), "--baseline", "gpt-4-0314", "--bootstrap", "50"]
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[-1] == (
        "ignored 24 self-battles (a model against itself carries no information): gpt-4-0314 24"
    )
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["gpt-4-0314"]["self_battles"] == 24


def real_battles() -> Path:
    """A public arena-hard-auto run's arena_hard_battles.jsonl anywhere under ../shared/data (CI lays it
    beside the checkout; JALIGN_SHARED_DATA for a checkout elsewhere); skipped when there is none."""
    root = Path(
        os.environ.get("JALIGN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    found = sorted(root.rglob("arena_hard_battles.jsonl")) if root.is_dir() else []
    if not found:
        pytest.skip("no arena_hard_battles.jsonl in shared/data (a fresh clone has no shared/)")
    return found[0]


def test_real_arena_hard_battles_are_scored():
    # arena-hard-auto v0.1's battles (21,016 rows, 1,134 of them gpt-4-0314 against itself) were refused
    # at their first self-battle
    path = real_battles()
    battles = read_battles(path)
    self_battles = len(battles) - len(without_self_battles(battles))
    assert self_battles > 0
    result = score_battles(battles, "gpt-4-0314", bootstrap=10)
    assert result["gpt-4-0314"]["score"] == 50.0
    assert sum(e.get("self_battles", 0) for e in result.values()) == self_battles
