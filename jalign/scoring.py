"""Arena-Hard-style scores: Bradley-Terry Elo against a baseline, bootstrap 95% CIs, style control.

A pure function of battles (no LLM calls). A battle is one JSONL object in the Chatbot Arena /
Arena-Hard-Auto v0.1 format: `question_id`, `model_a`, `model_b`, `winner` in `model_a | model_b |
tie | tie (bothbad)`; a strong verdict is the same row repeated (Arena-Hard v0.1 repeats `A>>B` 3x).

A self-battle (model_a == model_b: arena-hard writes the baseline's games against itself when the
baseline is also judged) carries no information for Bradley-Terry: it is left out of the fit and
counted per model ("self_battles").

**Scores** follow Arena-Hard v0.1 (`utils_math.compute_mle_elo`, `show_result.py`): a Bradley-Terry
logistic regression without intercept or penalty, features +ln(10) for model_a and -ln(10) for
model_b, a tie counted as half a win each way, Elo = 400 * coef + 1000 with the baseline anchored
at 1000. A model's score is its expected win rate against the baseline, x100, rounded to 2
decimals (the baseline is exactly 50.0). The 95% CI is the 2.5/97.5 percentile of the Elo over
bootstrap rounds (battles resampled with replacement, refitted, baseline anchored every round),
converted to a win rate as `show_result.py` does.

**Speed**: resampling N battles with replacement is a multinomial draw over the distinct battle
cells (model_a, model_b, outcome[, style row]), so the rounds are drawn in blocks as (rounds, cells)
count matrices and fitted together by a batched, damped Newton solve (a handful of parameters),
warm-started at the point estimate. Without style control there are a few dozen cells, so 1,000
rounds of 20,000 battles take well under a second; with style control nearly every battle is its
own cell and the same takes a few seconds (benchmarks/bench_score.py). Models absent from a
resample have no Elo in that round (NaN, left out of its percentiles; Arena-Hard's percentile
would be NaN).

**Style control** follows Chatbot Arena (FastChat `rating_systems.preprocess_for_style` /
`fit_contextual_bt`, which Arena-Hard v0.1's `construct_style_matrices` / `fit_bt` equal):
- features per battle: token length, header count, list count, bold count of answer a and b, each
  markdown count summed over its subkeys (h1..h6, ordered/unordered, `**`/`__`);
- each feature is (a - b) / (a + b + 1) (FastChat's `add_one`: no division by zero, so "0 when
  both are 0" holds), then z-scored over the battle rows with the population std (np.std); a
  feature constant over all battles carries no information and is set to 0;
- fitted jointly with the model ratings with FastChat's L2 penalty 0.25 * ||params||^2 (reg=0.5,
  the same as scikit-learn's default C=1 on Arena-Hard's duplicated rows). The penalty keeps the
  fit finite when style separates the outcomes; with hundreds of battles its effect is small;
- the style-controlled score is the model's win rate against the baseline from the model
  coefficients alone; features are standardised once on all battles, not per bootstrap round.

**One-sided data** (a model that wins, or loses, every battle: the MLE is at infinity): Arena-Hard's
scikit-learn fit stops at a large finite value (and refuses data where every row has the same
label). Here a vanishing ridge (1e-8 on the natural-scale ratings, pulling towards the baseline)
keeps the fit finite: such a model lands thousands of Elo away, a score of 0.00 or 100.00 (10 wins
out of 10: +3,374 Elo here, +3,350 from scikit-learn). On well-posed data the ridge's effect is
far below 1e-6 Elo.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jalign.records import Record, RecordError, check_text_field, read_jsonl_lines

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
# outcome for model_a: win 1, tie 1/2, loss 0
OUTCOME = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
# (feature name, field for answer a, field for answer b), in FastChat's STYLE_CONTROL_ELEMENTS_V1 order
STYLE_FIELDS = (
    ("length", "sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    ("header", "header_count_a", "header_count_b"),
    ("list", "list_count_a", "list_count_b"),
    ("bold", "bold_count_a", "bold_count_b"),
)
SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0
ALPHA = math.log(BASE)
STYLE_L2 = 0.5  # FastChat fit_contextual_bt reg (loss + reg/2 * ||params||^2)
TINY_L2 = 1e-8  # keeps one-sided (infinite-MLE) fits finite; see the module docstring
CELLS_PER_CHUNK = 4_000_000  # rounds x cells per batched solve: bounds memory (~32 MB per array)
# A bootstrap round stops once its largest Newton step is below 1e-3 (0.4 Elo); that step is still
# taken and convergence is quadratic, so ~1e-4 Elo remains (measured: < 4e-4 Elo on 300 and 20,000
# battles), far below the 0.01 rounding of the reported win rates. Point estimates go to 1e-10.
BOOTSTRAP_STEP_TOL = 1e-3


class ScoringError(ValueError):
    """Battles that cannot be scored: no battles, baseline absent, a model not connected to it."""


# ---------------------------------------------------------------------------------------------
# Reading and validating battles
# ---------------------------------------------------------------------------------------------
def _style_value(value: Any, where: str, field: str) -> float:
    """A style field is a count or a dict of counts (summed, as FastChat does)."""
    # fast paths for the common cases: an int, a dict of ints
    if type(value) is int and value >= 0:
        return float(value)
    if type(value) is dict and all(type(v) is int and v >= 0 for v in value.values()):
        return float(sum(value.values()))
    total = 0.0
    for v in value.values() if isinstance(value, dict) else [value]:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise RecordError(
                f"{where}: field 'conv_metadata.{field}' must be a non-negative count "
                f"or a dict of counts, got {value!r:.80}"
            )
        total += v
    return total


def check_battle(record: Record, where: str, style_control: bool = False) -> None:
    """Raise RecordError naming `where` and the field if `record` is not a valid battle."""
    if "question_id" not in record:
        raise RecordError(f"{where}: missing field 'question_id'")
    qid = record["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, str | int) or (isinstance(qid, str) and not qid.strip()):
        raise RecordError(
            f"{where}: field 'question_id' must be a non-empty string or an integer, got {qid!r:.80}"
        )
    # model_a == model_b is a valid row: arena-hard writes the baseline's games against itself whenever
    # the baseline is also a judged model; scoring leaves such self-battles out (split_self_battles)
    check_text_field(record, "model_a", where)
    check_text_field(record, "model_b", where)
    if "winner" not in record:
        raise RecordError(f"{where}: missing field 'winner'")
    if record["winner"] not in OUTCOME:
        raise RecordError(
            f"{where}: field 'winner' must be one of {', '.join(WINNERS)}, got {record['winner']!r:.80}"
        )
    if style_control:
        style_row(record, where)


def style_row(record: Record, where: str) -> list[tuple[float, float]]:
    """(a, b) style values in STYLE_FIELDS order, validated."""
    meta = record.get("conv_metadata")
    if not isinstance(meta, dict):
        raise RecordError(f"{where}: style control needs field 'conv_metadata' (an object), got {meta!r:.80}")
    row = []
    for _, field_a, field_b in STYLE_FIELDS:
        pair = []
        for field in (field_a, field_b):
            if field not in meta:
                raise RecordError(f"{where}: style control needs field 'conv_metadata.{field}'")
            pair.append(_style_value(meta[field], where, field))
        row.append((pair[0], pair[1]))
    return row


def read_battles(path: str | Path, *, style_control: bool = False) -> list[dict]:
    """Read and validate a battles JSONL; errors name file:line and the field."""
    numbered = read_jsonl_lines(path)
    for lineno, record in numbered:
        check_battle(record, f"{path}:{lineno}", style_control)
    return [record for _, record in numbered]


# ---------------------------------------------------------------------------------------------
# The fitting problem: distinct battle cells, a design matrix, a batched Newton solve
# ---------------------------------------------------------------------------------------------
@dataclass
class _Problem:
    models: list[str]  # sorted; column i of the model block is models[i]
    baseline: int
    X: np.ndarray  # (cells, params): +-ln(10) model columns [, style features]
    y: np.ndarray  # (cells,) outcome for model_a
    counts: np.ndarray  # (cells,) how many battles fall in each cell
    l2: np.ndarray  # (params,) ridge
    model_col: np.ndarray  # (models,) parameter column of each model, -1 for an anchored baseline
    pair: np.ndarray  # (cells, 2) model indices of each cell, for "absent from a resample"
    row_cell: np.ndarray  # (battles,) the cell of each battle


def _check_connected(models: list[str], pairs: Iterable[tuple[int, int]], baseline: int) -> None:
    parent = list(range(len(models)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    lost = [m for i, m in enumerate(models) if root(i) != root(baseline)]
    if lost:
        raise ScoringError(
            f"no chain of battles connects {', '.join(lost)} to the baseline {models[baseline]!r}: "
            "their scores are not defined"
        )


def style_features(battles: Sequence[Record]) -> np.ndarray:
    """(battles, 4) standardised style differences, FastChat's preprocess_for_style convention."""
    values = np.array([style_row(b, f"battle {i + 1}") for i, b in enumerate(battles)], dtype=np.float64)
    a, b = values[:, :, 0], values[:, :, 1]
    diff = (a - b) / (a + b + 1.0)
    std = diff.std(axis=0)
    centred = diff - diff.mean(axis=0)
    # a constant feature (e.g. no bold anywhere) would be 0/0: it explains nothing, so it is 0
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def split_self_battles(battles: Sequence[Record]) -> tuple[list[Record], Counter[str]]:
    """(battles between two different models, {model: its battles against itself}).

    A self-battle carries no information for Bradley-Terry (the model's rating cancels out of its
    likelihood), so it is left out of the fit, style standardisation included, and counted instead.
    """
    self_battles = Counter(b["model_a"] for b in battles if b["model_a"] == b["model_b"])
    if not self_battles:
        return list(battles), self_battles
    return [b for b in battles if b["model_a"] != b["model_b"]], self_battles


def _validate(battles: Sequence[Record]) -> tuple[list[Record], Counter[str]]:
    """Check the battle fields (style fields are checked when style features are built); return the
    battles to fit and the self-battles left out, per model."""
    if not battles:
        raise ScoringError("no battles to score")
    for i, battle in enumerate(battles):
        check_battle(battle, f"battle {i + 1}")
    fitted, self_battles = split_self_battles(battles)
    seen = {b["model_a"] for b in fitted} | {b["model_b"] for b in fitted}
    alone = sorted(set(self_battles) - seen)
    if alone:
        raise ScoringError(
            f"{', '.join(map(repr, alone))} battled only against itself: a self-battle carries no "
            "information, so its score is not defined; add its battles against other models"
        )
    return fitted, self_battles


def _problem(battles: Sequence[Record], baseline: str, style_control: bool) -> _Problem:
    """Distinct battle cells and their design matrix; `battles` already passed _validate."""
    models = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    if baseline not in models:
        raise ScoringError(f"baseline {baseline!r} is in no battle (models: {', '.join(models)})")
    index = {m: i for i, m in enumerate(models)}
    base = index[baseline]
    rows = np.array([(index[b["model_a"]], index[b["model_b"]], OUTCOME[b["winner"]]) for b in battles])
    _check_connected(models, {(int(a), int(b)) for a, b, _ in rows}, base)
    if style_control:
        rows = np.hstack([rows, style_features(battles)])
    cells, row_cell, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    pair = cells[:, :2].astype(np.int64)
    n_models = len(models)
    model_block = np.zeros((len(cells), n_models))
    model_block[np.arange(len(cells)), pair[:, 0]] = ALPHA
    model_block[np.arange(len(cells)), pair[:, 1]] = -ALPHA
    if style_control:
        # FastChat: every rating and style coefficient penalised, none anchored in the fit
        X = np.hstack([model_block, cells[:, 3:]])
        l2 = np.full(X.shape[1], STYLE_L2)
        model_col = np.arange(n_models)
    else:
        # unpenalised MLE: fix the baseline's rating at 0 by dropping its column
        keep = [i for i in range(n_models) if i != base]
        X = model_block[:, keep]
        l2 = np.full(X.shape[1], TINY_L2)
        model_col = np.full(n_models, -1)
        model_col[keep] = np.arange(len(keep))
    y = cells[:, 2].copy()
    return _Problem(models, base, X, y, counts.astype(np.float64), l2, model_col, pair, row_cell.ravel())


def _newton(
    X: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    l2: np.ndarray,
    theta0: np.ndarray,
    step_tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """Minimise sum_k W[r,k] * logloss(y_k, X_k . theta_r) + l2/2 * |theta_r|^2 for every round r.

    Batched Newton steps, damped so that no battle's logit can move by more than 1. For the logistic
    loss sigma'(z + t) <= e^|t| sigma'(z), so along such a step the loss falls by at least
    (1 - (e - 2)) of the Newton decrement: every step is a descent step and no loss needs computing.
    Near the optimum the steps are full and convergence is quadratic. A round leaves the batch
    when its largest step is below 1e-10 (4e-8 Elo) or its Newton decrement is below 1e-12 per
    battle; the Newton decrement ends flat one-sided fits, whose step size is set by rounding.
    """
    rounds, p = W.shape[0], X.shape[1]
    theta = np.array(np.broadcast_to(theta0, (rounds, p)), dtype=np.float64)
    upper = np.triu_indices(p)  # the Hessian is symmetric: accumulate its upper triangle only
    outer = X[:, upper[0]] * X[:, upper[1]]
    diag = np.diag(l2)
    # |change of any logit| <= sum_j max_k |X_kj| |step_j|: a cheap bound on the largest move
    reach_per_param = np.abs(X).max(axis=0)
    tolerance = 1e-12 * (1.0 + W.sum(axis=1))
    active = np.arange(rounds)
    for _ in range(max_iter):
        th, w = theta[active], W[active]
        sig = th @ X.T  # logits, turned into sigmoids in place (these arrays are rounds x cells)
        np.negative(sig, out=sig)
        with np.errstate(over="ignore"):
            np.exp(sig, out=sig)
        sig += 1.0
        np.reciprocal(sig, out=sig)
        dsig = 1.0 - sig
        dsig *= sig
        dsig *= w
        sig -= y
        sig *= w
        grad = sig @ X + th * l2
        hess = np.empty((len(active), p, p))
        hess[:, upper[0], upper[1]] = dsig @ outer
        hess[:, upper[1], upper[0]] = hess[:, upper[0], upper[1]]
        hess += diag
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        decrement = np.einsum("rp,rp->r", grad, step)
        damp = 1.0 / np.maximum(np.abs(step) @ reach_per_param, 1.0)
        theta[active] = th - step * damp[:, None]
        done = (np.abs(step).max(axis=1) < step_tol) | (decrement < tolerance[active])
        active = active[~done]
        if not active.size:
            return theta
    raise ScoringError(f"Bradley-Terry fit did not converge in {max_iter} Newton steps")


def _elo(problem: _Problem, theta: np.ndarray) -> np.ndarray:
    """(rounds, models) Elo with the baseline at 1000."""
    ratings = np.zeros((theta.shape[0], len(problem.models)))
    fitted = problem.model_col >= 0
    ratings[:, fitted] = theta[:, problem.model_col[fitted]]
    elo = SCALE * ratings + INIT_RATING
    return elo - elo[:, [problem.baseline]] + INIT_RATING


def _fit(problem: _Problem) -> np.ndarray:
    return _newton(problem.X, problem.y, problem.counts[None, :], problem.l2, np.zeros(problem.X.shape[1]))


def _resample(problem: _Problem, rng: np.random.Generator, rounds: int) -> np.ndarray:
    """(rounds, cells) battle counts of `rounds` resamples of the battles with replacement.

    Both ways below draw exactly that distribution: a multinomial over the cells (one binomial per
    cell: cheap when battles fall into few cells) or battle indices counted per cell (one draw per
    battle: cheaper when nearly every battle is its own cell, as with style features).
    """
    n, n_cells = len(problem.row_cell), len(problem.counts)
    if 5 * n_cells < n:
        return rng.multinomial(n, problem.counts / n, size=rounds).astype(np.float64)
    drawn = rng.integers(0, n, size=(rounds, n))
    counts = np.empty((rounds, n_cells))
    for r in range(rounds):  # one small bincount per round: faster than one over all rounds
        counts[r] = np.bincount(problem.row_cell[drawn[r]], minlength=n_cells)
    return counts


def _bootstrap(problem: _Problem, theta_hat: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """(rounds, models) Elo over bootstrap resamples; NaN where a model is absent from a resample."""
    rng = np.random.default_rng(seed)
    n_cells = len(problem.counts)
    chunk = max(1, min(rounds, CELLS_PER_CHUNK // max(n_cells, len(problem.row_cell))))
    involved = np.zeros((n_cells, len(problem.models)))
    for side in (0, 1):
        involved[np.arange(n_cells), problem.pair[:, side]] = 1.0
    out = []
    for start in range(0, rounds, chunk):
        W = _resample(problem, rng, min(chunk, rounds - start))
        theta = _newton(problem.X, problem.y, W, problem.l2, theta_hat, step_tol=BOOTSTRAP_STEP_TOL)
        elo = _elo(problem, theta)
        elo[W @ involved == 0] = np.nan
        out.append(elo)
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def win_rate(elo: float, baseline_elo: float = INIT_RATING) -> float:
    """Expected win rate (x100) against the baseline, as Arena-Hard's predict_win_rate."""
    return 100.0 / (1.0 + BASE ** ((baseline_elo - elo) / SCALE))


def fit_elo(battles: Sequence[Record], baseline: str) -> dict[str, float]:
    """Bradley-Terry Elo point estimate (Arena-Hard v0.1 compute_mle_elo), baseline at 1000. Public for
    benchmarks/bench_score.py, which checks it against Arena-Hard's reference implementation."""
    fitted, _ = _validate(battles)
    problem = _problem(fitted, baseline, style_control=False)
    elo = _elo(problem, _fit(problem))[0]
    return dict(zip(problem.models, elo.tolist(), strict=True))


def fit_style_elo(battles: Sequence[Record], baseline: str) -> tuple[dict[str, float], dict[str, float]]:
    """Style-controlled Elo (baseline at 1000) and the style coefficients (length, header, list, bold).
    Public for benchmarks/bench_score.py, which checks it against Arena-Hard's reference."""
    fitted, _ = _validate(battles)
    problem = _problem(fitted, baseline, style_control=True)
    theta = _fit(problem)
    elo = _elo(problem, theta)[0]
    coefs = theta[0, len(problem.models) :]
    return (
        dict(zip(problem.models, elo.tolist(), strict=True)),
        {name: float(c) for (name, _, _), c in zip(STYLE_FIELDS, coefs, strict=True)},
    )


def _scores(problem: _Problem, bootstrap: int, seed: int) -> dict[str, dict[str, float]]:
    theta = _fit(problem)
    point = _elo(problem, theta)[0]
    samples = _bootstrap(problem, theta, bootstrap, seed)
    with np.errstate(all="ignore"):
        low = np.nanpercentile(samples, 2.5, axis=0)
        high = np.nanpercentile(samples, 97.5, axis=0)
    return {
        m: {"score": _rounded(point[i]), "ci_low": _rounded(low[i]), "ci_high": _rounded(high[i])}
        for i, m in enumerate(problem.models)
    }


def _rounded(elo: float) -> float | None:
    # None: a model absent from every bootstrap resample (possible only with very few rounds)
    return None if math.isnan(elo) else round(win_rate(float(elo)), 2)


def score_battles(
    battles: list[dict], baseline: str, *, bootstrap: int = 1000, seed: int = 0, style_control: bool = False
) -> dict[str, dict]:
    """{model: {score, ci_low, ci_high, battles[, style_controlled: {score, ci_low, ci_high}]}}.

    Scores are win rates (x100, 2 decimals) against the baseline; CIs are bootstrap 2.5/97.5
    percentiles over `bootstrap` seeded rounds (None only for a model absent from every resample);
    "battles" counts the rows involving the model that were fitted; a model's battles against itself
    (arena-hard writes them for a baseline that is also judged) are left out and counted in
    "self_battles", present only for a model that had any; models are ordered by score, best first.
    """
    if bootstrap < 1:
        raise ScoringError(f"bootstrap must be at least 1 round, got {bootstrap}")
    fitted, self_battles = _validate(battles)
    result: dict[str, dict] = _scores(_problem(fitted, baseline, False), bootstrap, seed)
    involved = Counter(m for b in fitted for m in (b["model_a"], b["model_b"]))
    for model, entry in result.items():
        entry["battles"] = involved[model]
        if self_battles[model]:
            entry["self_battles"] = self_battles[model]
    if style_control:
        controlled = _scores(_problem(fitted, baseline, True), bootstrap, seed)
        for model, entry in result.items():
            entry["style_controlled"] = controlled[model]
    return dict(sorted(result.items(), key=lambda kv: (-kv[1]["score"], kv[0])))


# ---------------------------------------------------------------------------------------------
# Style metadata from answers (for whoever writes battles)
# ---------------------------------------------------------------------------------------------
# A run of Latin letters, a run of digits, or any other single non-space character (kana, kanji,
# punctuation, symbols) is one token: a tokenizer-free count that keeps Japanese and English
# answers on a comparable scale (subword tokenizers give on the order of one token per Japanese
# character, and one per English word).
_TOKEN = re.compile(r"[A-Za-z]+|\d+|\S")
_CODE_BLOCK = re.compile(r"```([^`]*)```")
_MARKDOWN = {
    "header_count": {f"h{n}": re.compile(rf"^#{{{n}}}\s", re.MULTILINE) for n in range(1, 7)},
    "list_count": {
        "ordered": re.compile(r"^\s*\d+\.\s", re.MULTILINE),
        "unordered": re.compile(r"^\s*[-*+]\s", re.MULTILINE),
    },
    "bold_count": {"**": re.compile(r"\*\*[^*\n]+\*\*"), "__": re.compile(r"__[^_\n]+__")},
}


def count_tokens(text: str) -> int:
    """Tokenizer-free token count: Latin words and digit runs count 1, other non-space characters 1 each."""
    return len(_TOKEN.findall(text))


def markdown_counts(text: str) -> dict[str, dict[str, int]]:
    """FastChat's add_markdown_info counts (same regexes), code blocks removed first."""
    for block in _CODE_BLOCK.findall(text):
        text = text.replace(block, "")
    return {
        kind: {key: len(pattern.findall(text)) for key, pattern in patterns.items()}
        for kind, patterns in _MARKDOWN.items()
    }


def style_metadata(
    answer_a: str, answer_b: str, count_tokens: Callable[[str], int] = count_tokens
) -> dict[str, Any]:
    """Chatbot Arena `conv_metadata` style fields for a battle between two answers.

    Markdown counts follow FastChat's add_markdown_info (`#`..`######` + space at a line start,
    `1. ` and `- `/`* `/`+ ` list items, `**x**` / `__x__` bold; code blocks removed first), kept per
    subkey as there. Tokens come from `count_tokens` over the whole answer: FastChat and Arena-Hard
    count tiktoken tokens; the default here is tokenizer-free (pass `lambda s: len(tok.encode(s))`
    to use a tokenizer). Style control only uses (a - b) / (a + b + 1), so consistency matters more
    than the unit."""
    meta: dict[str, Any] = {
        "sum_assistant_a_tokens": count_tokens(answer_a),
        "sum_assistant_b_tokens": count_tokens(answer_b),
    }
    counts_a, counts_b = markdown_counts(answer_a), markdown_counts(answer_b)
    for kind in _MARKDOWN:
        meta[f"{kind}_a"] = counts_a[kind]
        meta[f"{kind}_b"] = counts_b[kind]
    return meta
