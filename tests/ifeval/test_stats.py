"""jalign.ifeval.stats: McNemar's exact test, accuracies with bootstrap CIs, paired differences."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from jalign.ifeval.stats import accuracy, mcnemar_exact, paired_difference, per_instruction


@pytest.mark.parametrize(
    ("improved", "worsened"), [(1, 0), (0, 1), (5, 0), (3, 7), (10, 2), (8, 8), (20, 11), (0, 25), (40, 0)]
)
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(improved, worsened):
    expected = binomtest(improved, improved + worsened, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(improved, worsened) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert mcnemar_exact(worsened, improved) == pytest.approx(expected, rel=1e-9, abs=1e-15)  # symmetric


def test_mcnemar_without_discordant_prompts_is_one():
    assert mcnemar_exact(0, 0) == 1.0


# Four prompts: all followed; one of two; none of one; all three of three.
OUTCOMES = [[True, True], [True, False], [False], [True, True, True]]


def test_accuracy_prompt_and_instruction_level():
    acc = accuracy(OUTCOMES, rounds=500, seed=0)
    assert acc["prompts"] == 4 and acc["instructions"] == 8
    assert acc["prompt"]["accuracy"] == 50.0  # 2 of 4 prompts follow every instruction
    assert acc["instruction"]["accuracy"] == 75.0  # 6 of 8 instructions (not the mean of per-prompt rates)
    for level in ("prompt", "instruction"):
        entry = acc[level]
        assert 0 <= entry["ci_low"] <= entry["accuracy"] <= entry["ci_high"] <= 100
        assert entry["ci_low"] < entry["ci_high"]
    assert accuracy(OUTCOMES, rounds=500, seed=0) == acc  # seeded


def test_accuracy_of_everything_and_nothing_followed():
    assert accuracy([[True]] * 5, 100, 0)["prompt"] == {"accuracy": 100.0, "ci_low": 100.0, "ci_high": 100.0}
    none = accuracy([[False, False]] * 5, 100, 0)
    assert none["instruction"] == {"accuracy": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_accuracy_of_no_prompts():
    assert accuracy([], 100, 0) == {"prompt": None, "instruction": None, "prompts": 0}


def test_paired_difference_of_a_clearly_better_candidate():
    baseline = [[False, True]] * 40 + [[True]] * 20
    candidate = [[True, True]] * 40 + [[True]] * 20
    diff = paired_difference(baseline, candidate, rounds=1000, seed=0)
    prompt = diff["prompt"]
    assert prompt["diff"] == pytest.approx(100 * 40 / 60, abs=0.01)
    assert (prompt["improved"], prompt["worsened"]) == (40, 0)
    assert prompt["ci_low"] > 0 and prompt["ci_low"] <= prompt["diff"] <= prompt["ci_high"]
    assert prompt["mcnemar_p"] == pytest.approx(2 * 0.5**40, abs=1e-6)
    assert prompt["mcnemar_p"] < 0.001
    inst = diff["instruction"]
    assert inst["diff"] == pytest.approx(100 * 40 / 100, abs=0.01)  # 40 more of 100 instructions
    assert inst["ci_low"] > 0
    assert diff["prompts"] == 60


def test_paired_difference_of_a_worse_candidate_is_negative():
    baseline = [[True]] * 30
    candidate = [[False]] * 20 + [[True]] * 10
    prompt = paired_difference(baseline, candidate, 500, 0)["prompt"]
    assert prompt["diff"] == pytest.approx(-66.67, abs=0.01)
    assert (prompt["improved"], prompt["worsened"]) == (0, 20) and prompt["ci_high"] < 0


def test_paired_difference_of_identical_models_includes_zero():
    outcomes = [[True, False], [True], [False], [True, True]] * 10
    diff = paired_difference(outcomes, outcomes, 500, 0)
    for level in ("prompt", "instruction"):
        assert diff[level]["diff"] == 0.0
        assert diff[level]["ci_low"] <= 0 <= diff[level]["ci_high"]
    assert (diff["prompt"]["improved"], diff["prompt"]["worsened"]) == (0, 0)
    assert diff["prompt"]["mcnemar_p"] == 1.0


def test_paired_difference_with_as_many_improved_as_worsened_includes_zero():
    baseline = [[True]] * 15 + [[False]] * 15 + [[True]] * 10
    candidate = [[False]] * 15 + [[True]] * 15 + [[True]] * 10
    prompt = paired_difference(baseline, candidate, 1000, 0)["prompt"]
    assert (prompt["diff"], prompt["improved"], prompt["worsened"]) == (0.0, 15, 15)
    assert prompt["ci_low"] < 0 < prompt["ci_high"] and prompt["mcnemar_p"] == 1.0


def test_paired_difference_needs_the_same_prompts():
    with pytest.raises(ValueError, match="differ in length: 2 vs 1"):
        paired_difference([[True], [True]], [[True]], 10, 0)
    with pytest.raises(ValueError, match="instruction counts"):
        paired_difference([[True], [True]], [[True], [True, False]], 10, 0)
    assert paired_difference([], [], 10, 0) == {"prompt": None, "instruction": None, "prompts": 0}


def test_per_instruction_counts_and_accuracies():
    ids = [["a", "b"], ["a"], ["c", "a", "b"]]
    outcomes = [[True, False], [False], [True, True, True]]
    assert per_instruction(ids, outcomes) == {
        "a": {"accuracy": 66.67, "n": 3},
        "b": {"accuracy": 50.0, "n": 2},
        "c": {"accuracy": 100.0, "n": 1},
    }
    assert list(per_instruction(ids, outcomes)) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        per_instruction([["a", "b"]], [[True]])  # ids and verdicts must pair up
