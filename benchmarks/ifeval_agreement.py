"""Agreement of jalign.ifeval with M-IFEval's own Japanese verdicts, per instruction id, strict and loose.

Usage: python benchmarks/ifeval_agreement.py --upstream PATH [--verdicts DIR] [--show N]

PATH is a checkout of lightblue-tech/M-IFEval (a work tree, or a git directory read with `git show`).
For each model with `data/ja_input_response_data_<model>.jsonl`, every input row of
`data/ja_input_data.jsonl` gets that model's response (matched by prompt, as upstream's
evaluation_main.py does) and is checked in both modes; each verdict is compared with the one in
`evaluations/ja_input_response_data_<model>/eval_results_{strict,loose}.jsonl`, or in DIR/<same
name>/ when --verdicts points at a fresh run of upstream's code. Prints a table per mode (agreeing
verdicts / total, per id) and, with --show, the first N disagreements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jalign.ifeval.evaluation import evaluate_rows

PREFIX = "ja_input_response_data_"


class Upstream:
    """Reads files from an M-IFEval checkout, whether a work tree or a git directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.work_tree = (self.path / "data" / "ja_input_data.jsonl").is_file()

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True
        ).stdout

    def names(self, folder: str) -> list[str]:
        if self.work_tree:
            return sorted(p.name for p in (self.path / folder).iterdir())
        return sorted(Path(n).name for n in self._git("ls-tree", "--name-only", f"HEAD:{folder}").split())

    def read(self, relative: str) -> str:
        if self.work_tree:
            return (self.path / relative).read_text(encoding="utf-8")
        return self._git("show", f"HEAD:{relative}")

    def jsonl(self, relative: str) -> list[dict]:
        return [json.loads(line) for line in self.read(relative).splitlines() if line.strip()]

    def models(self) -> list[str]:
        names = self.names("data")
        return [n[len(PREFIX) : -len(".jsonl")] for n in names if n.startswith(PREFIX)]

    def merged_rows(self, model: str) -> list[dict]:
        """The input rows with this model's responses, keyed '<model>/<key>'."""
        responses = {r["prompt"]: r["response"] for r in self.jsonl(f"data/{PREFIX}{model}.jsonl")}
        return [
            {**row, "key": f"{model}/{row['key']}", "response": responses[row["prompt"]]}
            for row in self.jsonl("data/ja_input_data.jsonl")
        ]


def compare(upstream: Upstream, verdicts: Path | None, mode: str) -> tuple[Counter, Counter, list[str]]:
    """(agreeing, total) verdict counts per instruction id, and a line per disagreement."""
    agree: Counter = Counter()
    total: Counter = Counter()
    diffs: list[str] = []
    for model in upstream.models():
        name = f"{PREFIX}{model}/eval_results_{mode}.jsonl"
        if verdicts is not None:
            theirs = [json.loads(line) for line in (verdicts / name).read_text().splitlines() if line]
        else:
            theirs = upstream.jsonl(f"evaluations/{name}")
        by_prompt = {t["prompt"]: t["follow_instruction_list"] for t in theirs}
        rows = upstream.merged_rows(model)
        for row, ours in zip(rows, evaluate_rows(rows, mode), strict=True):
            their_flags = by_prompt[row["prompt"]]
            for i, (a, b) in enumerate(zip(ours["follow_instruction_list"], their_flags, strict=True)):
                instruction_id = row["instruction_id_list"][i]
                total[instruction_id] += 1
                agree[instruction_id] += a == b
                if a != b:
                    diffs.append(f"{mode} {row['key']} {instruction_id}: jalign {a}, upstream {b}")
    return agree, total, diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="M-IFEval checkout (work tree or git dir)")
    parser.add_argument(
        "--verdicts", type=Path, help="folder of a fresh upstream run (default: its evaluations/)"
    )
    parser.add_argument("--show", type=int, default=0, help="print the first N disagreements")
    args = parser.parse_args()
    upstream = Upstream(args.upstream)
    source = args.verdicts or "evaluations/ of the checkout"
    print(f"{len(upstream.models())} models; upstream verdicts from {source}")
    for mode in ("strict", "loose"):
        agree, total, diffs = compare(upstream, args.verdicts, mode)
        print(f"\n{mode}: {sum(agree.values())}/{sum(total.values())} verdicts agree")
        width = max(map(len, total))
        for instruction_id in sorted(total):
            a, t = agree[instruction_id], total[instruction_id]
            print(f"  {instruction_id:<{width}}  {a:>4}/{t:<4} {100 * a / t:6.2f}%")
        for line in diffs[: args.show]:
            print("  " + line)


if __name__ == "__main__":
    main()
