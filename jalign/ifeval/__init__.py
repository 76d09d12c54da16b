"""Verifiable-instruction checks for Japanese answers, compatible with M-IFEval's Japanese set.

`follows_instructions` checks one response; `read_ifeval_file`, `evaluate_rows` and `accuracy_table`
score a JSONL of responses as `jalign ifeval` does. Checkers: jalign.ifeval.checkers; strict and
loose mode: jalign.ifeval.evaluation.
"""

from jalign.ifeval.evaluation import (
    INSTRUCTION_IDS,
    IFEvalInputError,
    accuracy_table,
    evaluate_rows,
    follows_instructions,
    read_ifeval_file,
    validate_instructions,
)

__all__ = [
    "INSTRUCTION_IDS",
    "IFEvalInputError",
    "accuracy_table",
    "evaluate_rows",
    "follows_instructions",
    "read_ifeval_file",
    "validate_instructions",
]
