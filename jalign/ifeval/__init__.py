"""Verifiable-instruction checks for Japanese answers, compatible with M-IFEval's Japanese set.

`jalign.ifeval.evaluation`: `follows_instructions` checks one response; `read_ifeval_file`,
`evaluate_rows` and `accuracy_table` score a JSONL of responses as `jalign ifeval` does. Checkers:
`jalign.ifeval.checkers`; prompt composition for verify: `jalign.ifeval.compose`; statistics:
`jalign.ifeval.stats`.

This file re-exports nothing, so that the params schema (which reads `jalign.ifeval.compose`) does not
pull the checkers into every training stage's dependencies.
"""
