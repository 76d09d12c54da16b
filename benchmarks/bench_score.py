"""Benchmark of jalign.scoring.score_battles against the Arena-Hard v0.1 way of bootstrapping.

Usage: python benchmarks/bench_score.py [--battles 20000] [--rounds 1000] [--ref-rounds 20] [--seed 0]

1. Builds reproducible synthetic battles: 5 models with known strengths, 10% ties, a length effect
   on the outcome and Chatbot Arena `conv_metadata` on every battle.
2. Times ours: `score_battles(bootstrap=ROUNDS)`, then with `style_control=True` (which also
   computes the plain scores).
3. Times the Arena-Hard v0.1 way (utils_math.py of lmarena/arena-hard-auto before v2.0):
   `battles.sample(frac=1.0, replace=True)` + a scikit-learn `compute_mle_elo` refit per round,
   and for style control `construct_style_matrices` once + a scikit-learn `fit_bt` refit per round,
   each for only REF_ROUNDS rounds; its time for ROUNDS rounds is extrapolated from the per-round
   time (rounds are independent, so the cost is linear in them).
4. Checks that the point estimates agree (max |Elo difference|) and prints all times and the
   speed-up ratios side by side.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression

from jalign.scoring import STYLE_FIELDS, fit_elo, fit_style_elo, score_battles

STRENGTH = {"baseline": 0.0, "model-a": 0.35, "model-b": -0.25, "model-c": 0.8, "model-d": 0.1}  # log10 units
LENGTH = {"baseline": 500, "model-a": 900, "model-b": 300, "model-c": 600, "model-d": 1200}


def synthetic_battles(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(STRENGTH)
    battles = []
    for qid in range(n):
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        ta, tb = (int(rng.integers(LENGTH[m] // 2, LENGTH[m] * 3 // 2)) for m in (a, b))
        md = rng.integers(0, 5, size=(2, 3))
        meta = {"sum_assistant_a_tokens": ta, "sum_assistant_b_tokens": tb}
        for i, (_, field_a, field_b) in enumerate(STYLE_FIELDS[1:]):
            meta[field_a], meta[field_b] = {"x": int(md[0, i])}, {"x": int(md[1, i])}
        logit = math.log(10) * (STRENGTH[a] - STRENGTH[b]) + 1.0 * (ta - tb) / (ta + tb)
        if rng.random() < 0.1:
            winner = "tie"
        else:
            winner = "model_a" if rng.random() < 1 / (1 + math.exp(-logit)) else "model_b"
        battles.append(
            {"question_id": qid, "model_a": a, "model_b": b, "winner": winner, "conv_metadata": meta}
        )
    return battles


# --- the Arena-Hard v0.1 reference (same matrices, labels and solver settings as its utils_math.py) ---
def compute_mle_elo(df: pd.DataFrame, baseline: str) -> pd.Series:
    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    n, p = df.shape[0], len(models)
    X = np.zeros([n, p])
    X[np.arange(n), models[df["model_a"]]] = math.log(10)
    X[np.arange(n), models[df["model_b"]]] = -math.log(10)
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    tie = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie[len(tie) // 2 :] = False
    Y[tie] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # penalty=None: deprecated spelling of C=inf
        lr = LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8)
        lr.fit(X, Y)
    elo = 400 * lr.coef_[0] + 1000
    elo += 1000 - elo[models[baseline]]
    return pd.Series(elo, index=models.index)


def construct_style_matrices(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    n, p, k = df.shape[0], len(models), len(STYLE_FIELDS)
    X = np.zeros([n, p + k])
    X[np.arange(n), models[df["model_a"]]] = math.log(10)
    X[np.arange(n), models[df["model_b"]]] = -math.log(10)
    fields = [f for _, f, _ in STYLE_FIELDS] + [f for _, _, f in STYLE_FIELDS]
    style = np.array(
        [
            df.conv_metadata.map(lambda x, f=f: x[f] if type(x[f]) is int else sum(x[f].values()))
            for f in fields
        ]
    )
    diff = (style[:k] - style[k:]).astype(float) / (style[:k] + style[k:] + 1.0)
    X[:, -k:] = ((diff - diff.mean(axis=1)[:, None]) / diff.std(axis=1)[:, None]).T
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    tie = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie[len(tie) // 2 :] = False
    Y[tie] = 1.0
    return X, Y, models


def fit_bt(X: np.ndarray, Y: np.ndarray, models: pd.Series, baseline: str) -> pd.Series:
    lr = LogisticRegression(fit_intercept=False)  # Arena-Hard v0.1 fit_bt: sklearn defaults (L2, C=1)
    lr.fit(X, Y)
    elo = 400 * lr.coef_[0][: len(models)] + 1000
    elo += 1000 - elo[models[baseline]]
    return pd.Series(elo, index=models.index)


def style_bootstrap_round(
    X: np.ndarray, Y: np.ndarray, ties: np.ndarray, models: pd.Series, rng
) -> pd.Series:
    """One round of get_bootstrap_result_style_control: resample battles, keep tie pairs together."""
    k = len(X) // 2
    idx = rng.choice(k, size=k, replace=True)
    nontie, tie = idx[~ties[idx]], idx[ties[idx]]
    tie = np.concatenate([tie, tie + k])
    _X = np.concatenate([X[nontie], X[nontie], X[tie]])
    _Y = np.concatenate([Y[nontie], Y[nontie], Y[tie]])
    return fit_bt(_X, _Y, models, "baseline")


def timed(fn) -> tuple[object, np.ndarray]:
    """fn's result and [wall seconds, CPU seconds of this process] (CPU time is steadier on a shared VM)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, np.array([time.perf_counter() - wall, time.process_time() - cpu])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--battles", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--ref-rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"machine: nproc={os.cpu_count()}, CPU {cpu!r}, load average {os.getloadavg()[0]:.2f}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, ", end="")
    print(f"scikit-learn {sklearn.__version__}, OMP_NUM_THREADS={threads}")

    battles = synthetic_battles(args.battles, args.seed)
    df = pd.DataFrame(battles)
    n_ties = sum(b["winner"] == "tie" for b in battles)
    print(f"{len(battles):,} battles, {len(STRENGTH)} models, {n_ties:,} ties")

    # point estimates agree with the reference fits
    ours_elo, ref_elo = fit_elo(battles, "baseline"), compute_mle_elo(df, "baseline")
    X, Y, models = construct_style_matrices(df)
    ours_style, _ = fit_style_elo(battles, "baseline")
    ref_style = fit_bt(X, Y, models, "baseline")
    diff = max(abs(ours_elo[m] - ref_elo[m]) for m in STRENGTH)
    diff_style = max(abs(ours_style[m] - ref_style[m]) for m in STRENGTH)
    print(f"point Elo vs scikit-learn: max |diff| {diff:.1e} (plain), {diff_style:.1e} (style, its tol 1e-4)")

    plain, t_plain = timed(lambda: score_battles(battles, "baseline", bootstrap=args.rounds, seed=args.seed))
    style, t_style = timed(
        lambda: score_battles(battles, "baseline", bootstrap=args.rounds, seed=args.seed, style_control=True)
    )
    n, r = args.rounds, args.ref_rounds
    rng = np.random.default_rng(args.seed)
    _, t_ref = timed(
        lambda: [
            compute_mle_elo(df.sample(frac=1.0, replace=True, random_state=rng), "baseline") for _ in range(r)
        ]
    )
    ties = (df["winner"] == "tie").to_numpy()
    _, t_ref_style = timed(lambda: [style_bootstrap_round(X, Y, ties, models, rng) for _ in range(r)])
    ref_total, ref_style_total = t_ref / r * n, t_ref_style / r * n

    def ratio(slow: np.ndarray, fast: np.ndarray) -> str:
        return f"**{slow[0] / fast[0]:,.0f}x** ({slow[1] / fast[1]:,.0f}x)"

    rows = [
        ("ours, `score_battles`", n, t_plain, ratio(ref_total, t_plain)),
        ("Arena-Hard v0.1 (pandas resample + sklearn compute_mle_elo), measured", r, t_ref, ""),
        ("Arena-Hard v0.1, extrapolated", n, ref_total, "1x"),
        ("ours, `score_battles(style_control=True)` (plain + style)", n, t_style,
         ratio(ref_style_total, t_style)),
        ("Arena-Hard v0.1 style control (resample + sklearn fit_bt), measured", r, t_ref_style, ""),
        ("Arena-Hard v0.1 style control, extrapolated", n, ref_style_total, "1x"),
    ]  # fmt: skip
    print("\n| Run | Rounds | Wall | CPU | Wall per round | Speed-up wall (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rounds, (wall, cpu), speedup in rows:
        per_round = f"{wall / rounds * 1e3:,.2f} ms"
        print(f"| {name} | {rounds:,} | {wall:,.2f} s | {cpu:,.2f} s | {per_round} | {speedup} |")

    print("\nours: score [95% CI] | style-controlled score [95% CI] | generator strength (log10 units)")
    for model, entry in style.items():
        sc = entry["style_controlled"]
        plain_part = f"{entry['score']:6.2f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]"
        style_part = f"{sc['score']:6.2f} [{sc['ci_low']:.2f}, {sc['ci_high']:.2f}]"
        print(f"  {model:9s} {plain_part} | {style_part} | {STRENGTH[model]:+.2f}")
    assert all(plain[m]["score"] == style[m]["score"] for m in plain)


if __name__ == "__main__":
    main()
