"""`jalign publish`: plans, cards, per-row licences, idempotent pushes, and the token's path.

Every push goes through the real `huggingface_hub` client to tests/fake_hub.py, a Hub-compatible HTTP
server on 127.0.0.1 that keeps repos with their commit history in memory.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import fake_hub  # tests/ is on sys.path (conftest.py)
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from safetensors.numpy import save_file

from commands import main as cli
from jalign.config import ConfigError, from_dict, read_params
from jalign.hub import LicenseError, LicenseTally, check_licenses, lock_inputs, row_licenses, write_parquet
from jalign.params import HubConfig
from jalign.records import RecordError
from jalign.stage import numbers_only, write_metrics
from stages.publish import INPUTS, Project, human_size, wrapped

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")  # httpx2, in the client
TOKEN = f"hf_test_{uuid.uuid4().hex}"  # made at run time: no file of the repo holds it
USER = "alice"
BASE_HUB_ID = "Qwen/Qwen2.5-0.5B-Instruct"
DATASETS = {"instructions": f"{USER}/jalign-ja-instructions", "preferences": f"{USER}/jalign-ja-preferences"}
MODELS = {"dpo": f"{USER}/jalign-ja-dpo-adapter", "classifier/e5-small": f"{USER}/jalign-ja-reward-e5-small"}
# HubConfig has no defaults: the repository's own hub section is the complete base of every test's.
REPO = Path(__file__).resolve().parents[2]
REPO_HUB: dict[str, Any] = read_params(REPO / "params.yaml")["hub"]


# -- fixture project -----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")


def usage(**roles: str) -> dict:
    return {"total": {"requests": 1}} | {
        role: {
            "requests": 1,
            "model": {"backend": "openai", "model": model, "revision": "r1", "dtype": "auto"},
        }
        for role, model in roles.items()
    }


def write_report(path: Path, report: dict) -> None:
    """A stage report as the pipeline writes it: numbers only in `path`, the whole report beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_metrics(path, report)


PROVENANCE = {"git_commit": "0123456789abcdef0123456789abcdef01234567", "python": "3.11"}


def preference_rows(n: int, license_: Any = ("cc0-1.0",), terms: tuple = ()) -> dict[str, list[dict]]:
    pairwise, kto, binary = [], [], []
    for i in range(n):
        common = {"pair_id": f"p{i}", "license": list(license_) if isinstance(license_, tuple) else license_,
                  "model_terms": list(terms)}  # fmt: skip
        prompt = [{"role": "user", "content": f"質問{i}に答えてください。"}]
        chosen = [{"role": "assistant", "content": f"丁寧な回答{i}"}]
        rejected = [{"role": "assistant", "content": f"雑な回答{i}"}]
        pairwise.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, **common})
        kto += [{"prompt": prompt, "completion": chosen, "label": True, **common},
                {"prompt": prompt, "completion": rejected, "label": False, **common}]  # fmt: skip
        binary += [{"text": f"質問{i}\n丁寧な回答{i}", "label": 1, **common},
                   {"text": f"質問{i}\n雑な回答{i}", "label": 0, **common}]  # fmt: skip
    return {"pairwise": pairwise, "kto": kto, "binary": binary}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small project: data, sets, a PEFT adapter, a classifier, metrics and a dvc.lock; cwd = it."""
    root = tmp_path / "project"
    curated = [
        {"id": "i1", "instruction": "俳句を一つ作ってください。", "output": "古池や", "source": "seed", "license": "apache-2.0"},
        {"id": "i2", "instruction": "敬語に直してください。", "output": "承知しました。", "source": "evol_instruct",
         "license": ["apache-2.0"], "model_terms": [], "lineage": {"parent_id": "i1", "round": 1}},
        {"id": "i3", "instruction": "要約してください。", "output": "三行で述べます。", "source": "self_instruct",
         "license": ["Apache-2.0"], "tags": {"quality": 3.5, "category": "editing"}},
    ]  # fmt: skip
    write_jsonl(root / "data/instructions/curated.jsonl", curated)
    for fmt, rows in preference_rows(3).items():
        write_jsonl(root / f"data/preferences/sets/{fmt}_train.jsonl", rows)
    for fmt, rows in preference_rows(1, license_="apache-2.0").items():
        write_jsonl(root / f"data/preferences/sets/{fmt}_eval.jsonl", rows)

    adapter = root / "models/dpo/adapter"
    write_json(
        adapter / "adapter_config.json", {"base_model_name_or_path": BASE_HUB_ID, "peft_type": "LORA", "r": 4}
    )
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": np.arange(32, dtype=np.float32).reshape(4, 8)},
              str(adapter / "adapter_model.safetensors"))  # fmt: skip
    write_json(adapter / "tokenizer_config.json", {"model_max_length": 256})
    (adapter / "README.md").write_text("---\nlibrary_name: peft\n---\nPEFT's own card\n")
    classifier = root / "models/classifier/e5-small"
    write_json(
        classifier / "config.json", {"architectures": ["BertForSequenceClassification"], "num_labels": 2}
    )
    save_file({"classifier.weight": np.ones((2, 4), dtype=np.float32)}, str(classifier / "model.safetensors"))
    (classifier / "training_args.bin").write_bytes(b"\x80\x04pickle")
    for name, licence in (("multilingual-e5-small", "mit"), ("gemma-3-270m", "gemma (Gemma Terms of Use)")):
        write_json(root / f"models/base/{name}/jalign_model.json", {"name": name, "license": licence})

    write_report(
        root / "metrics/self_instruct.json",
        {"usage": usage(generator="Qwen/Qwen2.5-7B-Instruct"), "provenance": PROVENANCE},
    )
    write_report(
        root / "metrics/evolve.json",
        {"usage": usage(generator="Qwen/Qwen2.5-7B-Instruct", judge="gpt-4o-mini")},
    )
    write_report(root / "metrics/instructions.json", {"inputs": 5, "curated": 3, "dropped": {"near_duplicate": 2},
                 "usage": usage(curate="gpt-4o-mini"), "provenance": PROVENANCE})  # fmt: skip
    write_report(
        root / "metrics/translate.json",
        {"usage": usage(translator="Qwen/Qwen2.5-7B-Instruct", reviewer="Qwen/Qwen2.5-7B-Instruct")},
    )
    write_report(
        root / "metrics/respond.json", {"usage": usage(qwen="Qwen/Qwen2.5-7B-Instruct", mini="gpt-4o-mini")}
    )
    write_report(root / "metrics/judge.json", {"pairs_judged": 10, "kept_pairs": 4, "agreement_rate": 0.8125, "position_bias_rate": 0.12,
                 "invalid_rate": 0.03, "length_bias": 0.61, "method": "text", "usage": usage(judge="gpt-4o")})  # fmt: skip
    write_report(root / "metrics/preferences.json", {"pairs_in": 4, "provenance": PROVENANCE})
    write_report(root / "metrics/dpo.json", {"loss_type": "sigmoid", "beta": 0.1, "train_loss": 0.61, "eval_loss": 0.66,
                 "eval_reward_accuracy": 0.75, "steps": 3, "provenance": PROVENANCE})  # fmt: skip
    write_report(root / "metrics/classifier/e5-small.json", {"accuracy": 0.75, "f1": 0.8, "roc_auc": 0.875,
                 "pairwise_accuracy": 1.0, "eval_rows": 2, "provenance": PROVENANCE})  # fmt: skip
    write_report(root / "metrics/eval.json", {
        "candidates": {"dpo": {"jalign-ja-eval": {"score": 61.5, "ci_low": 55.0, "ci_high": 68.25, "style_controlled": {"score": 58.0},
                                                  "wins": 12, "ties": 3, "losses": 5, "invalid": 0, "invalid_rate": 0.0}}},
        "judge_reliability": {"jalign-ja-eval": {"swap_agreement": 0.9, "position_bias": 0.05, "invalid_rate": 0.0, "length_bias": 0.55}},
        "baseline": "base", "judge": {"model": "gpt-4o", "method": "text"}})  # fmt: skip
    lock = {"schema": "2.0", "stages": {
        "curate": {"deps": [{"path": "data/instructions/evolved.jsonl", "md5": "aaa111"}],
                   "outs": [{"path": "data/instructions/curated.jsonl", "md5": "bbb222"}]},
        "preferences": {"deps": [{"path": "data/preferences/pairs.jsonl", "md5": "ccc333"}],
                        "outs": [{"path": "data/preferences/sets", "md5": "ddd444.dir"}]},
        "dpo": {"deps": [{"path": "data/preferences/sets", "md5": "ddd444.dir"}, {"path": "stages/dpo.py", "md5": "eee555"}],
                "outs": [{"path": "dvclive/dpo", "md5": "x.dir"}, {"path": "models/dpo", "md5": "fff666.dir"}]},
        "classifier@e5-small": {"deps": [{"path": "data/preferences/sets", "md5": "ddd444.dir"}],
                                "outs": [{"path": "models/classifier/e5-small", "md5": "ggg777.dir"}]},
    }}  # fmt: skip
    (root / "dvc.lock").write_text(yaml.safe_dump(lock), encoding="utf-8")
    # The repository's params (every stage checks the whole file) with what the cards describe changed.
    params = read_params(REPO / "params.yaml")
    source = params["translate"]["sources"][0]
    source.update(
        name="oasst2",
        hf_dataset="OpenAssistant/oasst2",
        path=None,
        split="train",
        revision="main",
        license="apache-2.0",
    )
    params["classifier"]["encoders"]["e5-small"].update(model="models/base/multilingual-e5-small", epochs=3)
    params["dpo"].update(
        model=BASE_HUB_ID,
        loss="sigmoid",
        beta=0.1,
        learning_rate=5e-6,
        quantization="nf4",
        lora=params["dpo"]["lora"] | {"r": 4, "alpha": 8},
        start_from_sft=False,
    )
    params["hub"] = REPO_HUB | {"push": False, "namespace": USER, "private": True, "classifiers": ["e5-small"],
                                "base_model_licenses": {BASE_HUB_ID: "apache-2.0"}}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(root)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return root


def set_hub(root: Path, **values: Any) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["hub"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """The fake Hub, with the client's offline switch (set for the whole suite) lifted and Xet off:
    the fake speaks the plain LFS protocol only."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with fake_hub.FakeHubServer({TOKEN: USER}) as server:
        yield server


def publish(*args: str) -> Any:
    return CliRunner().invoke(
        cli, ["publish", "--params", "params.yaml", "--metrics", "metrics/hub.json", *args]
    )


def push(
    root: Path, server: fake_hub.FakeHubServer, monkeypatch: pytest.MonkeyPatch, **hub_values: Any
) -> Any:
    set_hub(root, push=True, endpoint=server.url, **hub_values)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return publish()


def files_of(server: fake_hub.FakeHubServer, repo_type: str, repo_id: str) -> dict[str, bytes]:
    return {p: b.data for p, b in server.repo(repo_type, repo_id).head.files.items()}


# -- unit level -------------------------------------------------------------------------------------------


def test_row_licenses_accept_strings_and_lists_and_name_bad_rows():
    assert row_licenses({"license": "CC0-1.0"}, "f:1") == (["cc0-1.0"], [])
    assert row_licenses({"license": ["mit", "apache-2.0"], "model_terms": ["gemma"]}, "f:1") == (
        ["apache-2.0", "mit"],
        ["gemma"],
    )
    assert row_licenses({}, "f:1") == (["unknown"], [])  # no licence is never assumed free
    with pytest.raises(RecordError, match=r"f:7: field 'model_terms' must be a licence id"):
        row_licenses({"license": "mit", "model_terms": {"gemma": 1}}, "f:7")
    tally = LicenseTally()
    tally.add_rows(
        [{"license": "mit", "model_terms": ["gemma"], "source": "s1"}, {"license": ["mit"]}], "a.jsonl"
    )
    tally.add_model("gemma", "models/base/g")
    assert tally.rows == {"mit": 2, "gemma": 1}
    assert tally.describe("gemma") == "1 rows: a.jsonl (1); row sources: s1 (1); base model models/base/g"
    tally.add_model("apache-2.0", "models/base/e5")
    assert tally.counted(overridden=["gemma"]) == [
        "apache-2.0 (base)",
        "gemma ×1 + base (override)",
        "mit ×2",
    ]


def test_a_refusal_is_one_line_naming_the_repo_the_reason_and_the_fix():
    tally = LicenseTally()
    tally.add_rows([{"license": "mit", "model_terms": ["gemma"]}, {"license": "cc-by-nc-4.0"}], "a.jsonl")
    with pytest.raises(LicenseError) as info:
        check_licenses("alice/ds", tally, ["mit"], [])
    assert str(info.value) == (
        "alice/ds: refused — cc-by-nc-4.0, gemma not in hub.allowed_licenses; "
        "fix: add cc-by-nc-4.0, gemma to hub.override_licenses"
    )
    assert check_licenses("alice/ds", tally, ["mit"], ["cc-by-nc-4.0", "gemma"]) == ["cc-by-nc-4.0", "gemma"]
    # Rows without a licence are traced to their file; a base model without one to the setting naming it.
    tally = LicenseTally()
    tally.add_rows([{"license": "mit"}, {}, {"license": []}], "data/x.jsonl")
    tally.add_model("unknown", "org/base (licence not recorded)")
    with pytest.raises(LicenseError) as info:
        check_licenses("alice/m", tally, ["mit"], [])
    assert str(info.value) == (
        "alice/m: refused — 2 rows without a licence in data/x.jsonl, no known licence for base model "
        "org/base (licence not recorded); fix: set `license` on those rows; name its licence in "
        "hub.base_model_licenses (or add unknown to hub.override_licenses)"
    )


def test_plan_cells_wrap_at_their_column_within_120_columns():
    ids = [f"licence-{i:02d} ×{i * 100}" for i in range(12)]
    lines = wrapped("alice/repo  dataset  ", ids, 21)
    assert len(lines) > 1 and all(len(line) <= 120 for line in lines)
    assert all(line.startswith(" " * 21 + "licence-") for line in lines[1:])
    assert [w.rstrip(",") for w in " ".join(lines).split()[2:]] == " ".join(ids).split()  # all, in order
    assert [human_size(n) for n in (568, 22_423, 15_220_968, 2_400_000_000)] == [
        "568 B",
        "22.4 kB",
        "15.2 MB",
        "2.4 GB",
    ]


def test_hub_config_validation_names_the_field():
    assert from_dict(HubConfig, REPO_HUB, "hub").namespace == "jalign"
    with pytest.raises(ConfigError, match=r"^hub\.privat: unknown key"):
        from_dict(HubConfig, REPO_HUB | {"privat": True}, "hub")
    with pytest.raises(ConfigError, match=r"^hub\.namespace: required key is missing$"):
        from_dict(HubConfig, {k: v for k, v in REPO_HUB.items() if k != "namespace"}, "hub")
    assert (
        from_dict(HubConfig, {k: v for k, v in REPO_HUB.items() if k != "endpoint"}, "hub").endpoint is None
    )
    with pytest.raises(ConfigError, match=r"^hub: namespace: 'a b' is not a valid"):
        from_dict(HubConfig, REPO_HUB | {"namespace": "a b"}, "hub")
    with pytest.raises(ConfigError, match=r"^hub: dpo_repo: 'x/y' is not a valid Hub repo name"):
        from_dict(HubConfig, REPO_HUB | {"dpo_repo": "x/y"}, "hub")
    with pytest.raises(ConfigError, match=r"allowed_licenses: 'unknown' is never allowed"):
        from_dict(HubConfig, REPO_HUB | {"allowed_licenses": ["mit", "unknown"]}, "hub")
    with pytest.raises(ConfigError, match=r"allowed_licenses: use lower-case Hub licence ids"):
        from_dict(HubConfig, REPO_HUB | {"allowed_licenses": ["MIT"]}, "hub")
    with pytest.raises(ConfigError, match=r"endpoint: credentials in the URL"):
        from_dict(HubConfig, REPO_HUB | {"endpoint": "https://user:secret@hub.example"}, "hub")
    with pytest.raises(ConfigError, match=r"endpoint: 'hub\.example' is not an http\(s\) URL"):
        from_dict(HubConfig, REPO_HUB | {"endpoint": "hub.example"}, "hub")
    with pytest.raises(ConfigError, match=r"classifier_repo: must contain \{name\}"):
        from_dict(HubConfig, REPO_HUB | {"classifiers": ["a", "b"], "classifier_repo": "reward"}, "hub")
    with pytest.raises(ConfigError, match=r"repo names collide"):
        from_dict(HubConfig, REPO_HUB | {"dpo_repo": "jalign-ja-reward-e5-small"}, "hub")
    with pytest.raises(ConfigError, match=r"^hub\.allowed_licenses: expected a list"):
        from_dict(HubConfig, REPO_HUB | {"allowed_licenses": "mit"}, "hub")


def test_repo_params_hub_section_loads_and_every_field_is_documented():
    import dataclasses

    from jalign.config import as_dict, load_section, read_params

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    config = load_section(HubConfig, "hub", params)
    assert config.push is False and config.private is True and config.endpoint is None
    written = read_params(params)["hub"]
    assert "endpoint" not in written  # null by default, so left out
    assert as_dict(config) == written | {"endpoint": None}  # every key written, every value arrives
    assert all(f.metadata.get("help") for f in dataclasses.fields(HubConfig))


def test_parquet_bytes_depend_on_the_rows_alone(tmp_path: Path):
    rows = preference_rows(3)["pairwise"]
    write_parquet(rows, tmp_path / "a.parquet", "x")
    write_parquet([dict(r) for r in rows], tmp_path / "b.parquet", "x")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.read_table(tmp_path / "a.parquet").to_pylist() == rows
    with pytest.raises(RecordError, match=r"sets.jsonl: field 'label' holds values of incompatible types"):
        write_parquet([{"label": 1}, {"label": "yes"}], tmp_path / "c.parquet", "sets.jsonl")


def test_lock_inputs_finds_the_stage_holding_the_artifact():
    lock = {
        "stages": {
            "dpo": {"deps": [{"path": "d", "md5": "1"}], "outs": [{"path": "models/dpo", "md5": "2.dir"}]}
        }
    }
    assert lock_inputs(lock, "models/dpo/adapter") == {
        "stage": "dpo", "deps": [{"path": "d", "md5": "1"}], "out": {"path": "models/dpo", "md5": "2.dir"}}  # fmt: skip
    assert lock_inputs(lock, "models/dpo-other") is None


# -- plan and dry run ---------------------------------------------------------------------------------


def plan_rows(out: str) -> dict[str, list[str]]:
    """The dry run's table: repo id -> its cells (the licence set as one cell)."""
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line)  # columns are two or more spaces apart
        if cells[0] in {*DATASETS.values(), *MODELS.values()}:
            rows[cells[0]] = cells
    return rows


def test_dry_run_lists_repos_files_sizes_and_licences_offline(project: Path):
    set_hub(project, push=True, endpoint="http://127.0.0.1:9")  # nothing listens there; no token either
    result = publish("--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    table = plan_rows(out)
    # repo, type, files, size, rows (splits together / training rows), licence set counted
    instructions = table[DATASETS["instructions"]]
    assert instructions[1:3] + instructions[4:] == ["dataset", "2", "3", "apache-2.0 ×3"]
    assert re.fullmatch(r"\d+\.\d kB", instructions[3])
    assert table[DATASETS["preferences"]][5] == "apache-2.0 ×5, cc0-1.0 ×15"  # 1+2+2 test; 3+6+6 train
    assert table[MODELS["dpo"]][5] == "apache-2.0 (base), cc0-1.0 ×3"  # the base's licence, then its rows
    assert table[MODELS["classifier/e5-small"]][1:3] == ["model", "3"]  # no pickle: config, weights, card
    assert table[MODELS["classifier/e5-small"]][5] == "cc0-1.0 ×6, mit (base)"
    size = (project / "models/dpo/adapter/adapter_model.safetensors").stat().st_size
    assert f"adapter_model.safetensors ({size} B)" in out
    assert "data/train-00000-of-00001.parquet (3 rows, " in out
    assert (
        "pairwise/test-00000-of-00001.parquet (1 row, " in out
        and "binary/test-00000-of-00001.parquet (2 rows" in out
    )
    assert "training_args.bin" not in out  # a pickle; never uploaded
    assert "Refused" not in out
    # One screen: every line fits 120 columns.
    assert max(len(line) for line in out.splitlines()) <= 120 and len(out.splitlines()) < 30
    assert not (project / "metrics/hub.json").exists() and not (project / "metrics/hub.meta.json").exists()


def test_dry_run_on_a_clone_without_outputs_says_how_to_get_them(project: Path):
    (project / "data/instructions/curated.jsonl").unlink()  # a fresh clone before `dvc pull`
    result = publish("--dry-run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "data/instructions/curated.jsonl: file not found (`dvc pull` fetches" in result.output


def test_a_dataset_with_no_rows_is_planned_with_its_card(project: Path):
    """A curate gate that keeps nothing (the default profile's 270M tagger) left the plan without a folder
    for the card: the publish stage died with FileNotFoundError."""
    write_jsonl(project / "data/instructions/curated.jsonl", [])
    result = publish("--dry-run")
    assert result.exit_code == 0, result.output
    instructions = plan_rows(result.output)[DATASETS["instructions"]]
    assert instructions[2] == "1" and instructions[4] == "0"  # the card, no rows
    files = [line for line in result.output.splitlines() if line.startswith(f"{DATASETS['instructions']}: ")]
    assert len(files) == 1 and "README.md" in files[0] and ".parquet" not in files[0], files


def read_hub(project: Path) -> tuple[dict, dict]:
    """(metrics/hub.json, metrics/hub.meta.json)."""
    return tuple(json.loads((project / f"metrics/hub{s}.json").read_text()) for s in ("", ".meta"))  # type: ignore[return-value]


def keys(tree: dict, prefix: str = "") -> list[str]:
    """dvc's flattened metric names."""
    return [k for key, v in tree.items() for k in (keys(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])]  # fmt: skip


def test_plan_stage_writes_figures_to_the_metric_and_the_plan_beside_it(project: Path):
    result = publish()  # hub.push: false, the DVC stage's default
    assert result.exit_code == 0, result.output
    figures, plan = read_hub(project)
    # metrics/hub.json: counts only, under short keys that stay the same from run to run.
    assert figures == {
        "planned": 4, "pushed": 0, "committed": 0, "refused": 0, "overridden": 0, "files": 2 + 7 + 4 + 3,
        "repos": {"instructions": {"rows": 3, "licenses": 1, "refused": 0},
                  "preferences": {"rows": 20, "licenses": 2, "refused": 0},  # 1+2+2 test, 3+6+6 train
                  "dpo": {"rows": 3, "licenses": 2, "refused": 0},  # training rows; + the base's licence
                  "classifier/e5-small": {"rows": 6, "licenses": 2, "refused": 0}},
    }  # fmt: skip
    assert numbers_only(plan) == figures  # the figures are the plan's numbers, nothing else
    # No repo id, licence id or file path in a key: they are long, and change between runs.
    names, licences = keys(figures), {lic for repo in plan["plan"] for lic in repo["licenses"]}
    assert max(map(len, names)) <= 40 and not any(USER in k or ".json" in k for k in names)
    assert not licences & {part for k in names for part in k.split(".")}
    # metrics/hub.meta.json: the whole plan, with provenance.
    assert plan["endpoint"] == "https://huggingface.co" and plan["refusals"] == [] and plan["provenance"]
    instructions, prefs, _, classifier = plan["plan"]
    assert instructions["repo_id"] == DATASETS["instructions"] and instructions["repo_type"] == "dataset"
    assert instructions["commit"] is None and instructions["license"] == "apache-2.0"
    assert [f["path"] for f in instructions["files"]] == ["data/train-00000-of-00001.parquet", "README.md"]
    assert all(f["size"] > 0 and len(f["sha256"]) == 64 for f in instructions["files"])
    assert prefs["license"] == "other" and prefs["license_name"] == "apache-2-0-and-cc0-1-0"
    assert prefs["licenses"]["apache-2.0"]["rows"] == 5 and prefs["rows"]["kto/test"] == 2
    assert classifier["artifact"] == "classifier/e5-small" and classifier["licenses"]["mit"]["base_models"]
    # Deterministic: the same inputs plan the same bytes.
    assert publish().exit_code == 0
    again_figures, again = read_hub(project)
    assert again["plan"] == plan["plan"] and again_figures == figures


def test_plan_records_a_refusal_without_failing_the_stage(project: Path):
    (project / "models/base/gemma-3-270m").mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classifier"]["encoders"]["e5-small"]["model"] = "models/base/gemma-3-270m"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = publish()
    assert result.exit_code == 0, result.output
    figures, plan = read_hub(project)
    assert figures["refused"] == 1 and figures["repos"]["classifier/e5-small"]["refused"] == 1
    refusal = (
        f"{MODELS['classifier/e5-small']}: refused — gemma not in hub.allowed_licenses; "
        "fix: add gemma to hub.override_licenses"
    )
    assert plan["refusals"] == [refusal] and plan["plan"][3]["refused"] == refusal
    assert plan["plan"][3]["licenses"]["gemma"]["base_models"] == [
        "models/base/gemma-3-270m (models/base/gemma-3-270m/jalign_model.json)"
    ]  # where the refused licence comes from
    dry = publish("--dry-run")  # the dry run says a push would fail, and why, on one line
    assert dry.exit_code == 1 and "Error: 1 of 4 repos refused (see above)" in dry.output
    assert refusal in dry.output.splitlines()
    assert "gemma (base)" in plan_rows(dry.output)[MODELS["classifier/e5-small"]][5]


# -- pushing --------------------------------------------------------------------------------------------


def test_publish_creates_repos_cards_and_is_idempotent(
    project: Path, hub: fake_hub.FakeHubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog, capfd
):
    from huggingface_hub import DatasetCard, HfApi, ModelCard

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    result = push(project, hub, monkeypatch)
    assert result.exit_code == 0, result.output

    # Files: Parquet per split, PEFT / model files, our card; not PEFT's README nor the pickle.
    instructions = files_of(hub, "dataset", DATASETS["instructions"])
    assert sorted(instructions) == [".gitattributes", "README.md", "data/train-00000-of-00001.parquet"]
    rows = pq.read_table(io.BytesIO(instructions["data/train-00000-of-00001.parquet"])).to_pylist()
    assert [r["id"] for r in rows] == ["i1", "i2", "i3"]
    assert [r["license"] for r in rows] == [["apache-2.0"]] * 3 and rows[0]["model_terms"] == []
    prefs = files_of(hub, "dataset", DATASETS["preferences"])
    assert {p for p in prefs if p.endswith(".parquet")} == {
        f"{fmt}/{split}-00000-of-00001.parquet" for fmt in ("pairwise", "kto", "binary") for split in ("train", "test")}  # fmt: skip
    dpo = files_of(hub, "model", MODELS["dpo"])
    assert sorted(dpo) == [
        ".gitattributes",
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer_config.json",
    ]
    assert (
        dpo["adapter_model.safetensors"]
        == (project / "models/dpo/adapter/adapter_model.safetensors").read_bytes()
    )
    assert b"PEFT's own card" not in dpo["README.md"]
    assert "training_args.bin" not in files_of(hub, "model", MODELS["classifier/e5-small"])
    assert all(
        hub.repo(t, r).private for t, r in [("dataset", DATASETS["instructions"]), ("model", MODELS["dpo"])]
    )

    # Cards parse back from the Hub with the right metadata.
    api = HfApi(endpoint=hub.url, token=TOKEN)
    cache = tmp_path / "hf-cache"
    card = DatasetCard.load(
        api.hf_hub_download(DATASETS["preferences"], "README.md", repo_type="dataset", cache_dir=cache)
    )
    assert card.data.license == "other" and card.data.license_name == "apache-2-0-and-cc0-1-0"
    assert card.data.language == "ja" and card.data.source_datasets == ["extended|OpenAssistant/oasst2"]
    assert {c["config_name"] for c in card.data.configs} == {"pairwise", "kto", "binary"}
    assert "| `cc0-1.0` | 15 |" in card.text and "agreement_rate | 0.8125" in card.text
    assert "`gpt-4o`" in card.text and "`ddd444.dir`" in card.text  # judge model; dvc.lock md5
    # Model identities and text fields come from the stage reports: metrics/<stage>.json holds numbers only.
    assert "| metrics/judge.meta.json | judge | `gpt-4o` | openai | r1 |" in card.text
    assert "(judge method: `text`)" in card.text
    model_card = ModelCard.load(api.hf_hub_download(MODELS["dpo"], "README.md", cache_dir=cache))
    assert model_card.data.license == "other" and model_card.data.base_model == BASE_HUB_ID
    assert model_card.data.datasets == [DATASETS["preferences"]] and model_card.data.language == "ja"
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in model_card.data.eval_results}
    assert results == {
        ("jalign-ja-eval", "win_rate"): 61.5,
        ("jalign-ja-eval", "style_controlled_win_rate"): 58.0,
    }
    assert "model-index" in model_card.content and "[55, 68.25]" in model_card.text
    assert (
        "`dpo.learning_rate` | 5e-06" in model_card.text
        and f"`{PROVENANCE['git_commit']}`" in model_card.text
    )
    assert "| `loss_type` | sigmoid |" in model_card.text and "judged pairwise by `gpt-4o`" in model_card.text
    reward_card = ModelCard.load(
        api.hf_hub_download(MODELS["classifier/e5-small"], "README.md", cache_dir=cache)
    )
    assert reward_card.data.base_model == "intfloat/multilingual-e5-small"
    assert reward_card.data.license == "other" and reward_card.data.license_name == "cc0-1-0-and-mit"
    assert {r.metric_type: r.metric_value for r in reward_card.data.eval_results}["pairwise_accuracy"] == 1.0

    # metrics/hub.json counts what was pushed; metrics/hub.meta.json versions each repo's commit.
    figures, report = read_hub(project)
    assert figures["pushed"] == 4 and figures["committed"] == 4 and figures["refused"] == 0
    entries = {e["artifact"]: e for e in report["plan"]}
    for artifact, repo_id in {**DATASETS, **MODELS}.items():
        repo_type = "dataset" if artifact in DATASETS else "model"
        assert entries[artifact]["commit"] == hub.repo(repo_type, repo_id).head.sha
        assert entries[artifact]["committed"] is True and figures["repos"][artifact]["committed"] == 1
        assert len(hub.repo(repo_type, repo_id).commits) == 2  # the Hub's initial commit + ours

    # Publishing unchanged artifacts makes no commit.
    assert publish().exit_code == 0
    again_figures, again = read_hub(project)
    assert again_figures["pushed"] == 4 and again_figures["committed"] == 0
    for artifact, repo_id in {**DATASETS, **MODELS}.items():
        repo_type = "dataset" if artifact in DATASETS else "model"
        assert len(hub.repo(repo_type, repo_id).commits) == 2, artifact
        entry = next(e for e in again["plan"] if e["artifact"] == artifact)
        assert entry["commit"] == entries[artifact]["commit"] and entry["committed"] is False

    # The token went over HTTP as a header (writes are refused without it), and nowhere else.
    writes = (
        hub.calls("POST", "/commit/")
        + hub.calls("POST", "/preupload/")
        + hub.calls("POST", "/api/repos/create")
    )
    assert writes and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in writes)
    captured = capfd.readouterr()
    for text in (result.output, caplog.text, captured.out, captured.err):
        assert TOKEN not in text
    for path in [*project.rglob("*"), *cache.rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        for commit in repo.commits:
            assert all(TOKEN.encode() not in blob.data for blob in commit.files.values())


def test_a_changed_artifact_gets_one_new_commit_and_stale_files_go(
    project: Path, hub: fake_hub.FakeHubServer, monkeypatch: pytest.MonkeyPatch
):
    set_hub(project, push=True)  # endpoint null: HF_ENDPOINT points the client at the fake Hub
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert publish().exit_code == 0
    assert read_hub(project)[1]["endpoint"] == hub.url
    (project / "models/dpo/adapter/tokenizer_config.json").unlink()
    with (project / "data/instructions/curated.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"id": "i4", "instruction": "説明して", "output": "はい", "license": "mit"}) + "\n"
        )
    result = publish()
    assert result.exit_code == 0, result.output
    figures, report = read_hub(project)
    assert {a for a, r in figures["repos"].items() if r["committed"]} == {"instructions", "dpo"}
    assert figures["committed"] == 2 and figures["repos"]["instructions"]["licenses"] == 2
    assert "tokenizer_config.json" not in files_of(hub, "model", MODELS["dpo"])
    assert len(hub.repo("dataset", DATASETS["preferences"]).commits) == 2
    assert report["plan"][0]["license"] == "other"  # apache-2.0 and now mit


def test_licence_refusal_names_licence_rows_and_source_and_override_is_carded(
    project: Path, hub: fake_hub.FakeHubServer, monkeypatch: pytest.MonkeyPatch
):
    train = project / "data/preferences/sets/pairwise_train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows[0] |= {"model_terms": ["openai-terms"], "source": "respond:gpt-4o-mini"}
    write_jsonl(train, rows)
    with (project / "data/instructions/curated.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "i9", "instruction": "出典不明", "output": "?"}) + "\n")  # no licence

    result = push(project, hub, monkeypatch)
    assert result.exit_code == 1
    # Each refusal on one line: the repo, what is refused (rows without a licence: their file), the fix.
    assert result.output.splitlines() == [
        "Error: alice/jalign-ja-instructions: refused — 1 row without a licence in "
        "data/instructions/curated.jsonl; fix: set `license` on those rows (or add unknown to "
        "hub.override_licenses)",
        "alice/jalign-ja-preferences: refused — openai-terms not in hub.allowed_licenses; "
        "fix: add openai-terms to hub.override_licenses",
        "alice/jalign-ja-dpo-adapter: refused — openai-terms not in hub.allowed_licenses; "
        "fix: add openai-terms to hub.override_licenses",  # trained on that row
    ]
    assert hub.requests == []  # refused before anything is sent
    # The plan names the refused rows' files and sources.
    set_hub(project, push=False)
    assert publish().exit_code == 0
    licenses = read_hub(project)[1]["plan"][1]["licenses"]["openai-terms"]
    assert licenses["files"] == {"data/preferences/sets/pairwise_train.jsonl": 1}
    assert licenses["row_sources"] == {"respond:gpt-4o-mini": 1}

    result = push(project, hub, monkeypatch, override_licenses=["openai-terms", "unknown"])
    assert result.exit_code == 0, result.output
    card = files_of(hub, "dataset", DATASETS["preferences"])["README.md"].decode()
    assert "**Licence override**: `openai-terms` is outside" in card
    assert "license: other" in card and "openai-terms" in card.split("---")[1]  # license_name
    figures, report = read_hub(project)
    assert report["plan"][1]["overridden"] == ["openai-terms"] and report["plan"][0]["overridden"] == [
        "unknown"
    ]
    assert figures["overridden"] == 3 and figures["refused"] == 0  # instructions, preferences, dpo


def test_errors_are_redacted_and_a_missing_token_is_explained(
    project: Path, hub: fake_hub.FakeHubServer, monkeypatch: pytest.MonkeyPatch, caplog, capfd
):
    set_hub(project, push=True, endpoint=hub.url)
    result = publish()
    assert result.exit_code == 1 and "HF_TOKEN is not set" in result.output and hub.requests == []

    def echo_token(request: fake_hub.Request) -> tuple[int, str] | None:  # a server that leaks what it got
        if "/commit/" in request.path:
            return 403, f"token {request.headers.get('authorization')} may not write here"
        return None

    hub.fail = echo_token
    caplog.set_level(logging.DEBUG)
    result = push(project, hub, monkeypatch)
    assert result.exit_code == 1
    assert (
        "dataset alice/jalign-ja-instructions" in result.output
        and "token Bearer *** may not write" in result.output
    )
    captured = capfd.readouterr()
    for text in (result.output, caplog.text, captured.out, captured.err):
        assert TOKEN not in text
    assert not (project / "metrics/hub.json").exists() and not (project / "metrics/hub.meta.json").exists()


def test_a_bad_json_file_of_the_project_names_its_line_and_column(tmp_path: Path):
    """The wording of every JSON error (issue 20, item 10): what is wrong, then where on the line."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "judge.json").write_text('{\n  "a": "b\n}\n', encoding="utf-8")
    with pytest.raises(RecordError) as info:
        Project(tmp_path, None, None, (), {}).json("metrics/judge.json")  # type: ignore[arg-type]
    assert str(info.value) == "metrics/judge.json:2: not valid JSON (Invalid control character at column 10)"


def test_dvc_yaml_lists_the_stage_reports_publish_reads(project: Path, monkeypatch: pytest.MonkeyPatch):
    """Cards read the whole reports (metrics/<stage>.meta.json), never the numbers-only metrics: the DVC
    stage must depend on exactly those, or a changed model identity would not rerun it."""
    read: set[str] = set()
    original = Project.json

    def recording(self: Project, rel: str | Path) -> dict[str, Any] | None:
        read.add(str(rel))
        return original(self, rel)

    monkeypatch.setattr(Project, "json", recording)  # the real reader runs; this only notes its paths
    set_hub(project, push=False)
    assert publish("--dry-run").exit_code == 0
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["publish"]
    reports = {r for r in read if r.startswith("metrics/")}
    assert reports and all(r.endswith(".meta.json") for r in reports), reports
    assert {d for d in stage["deps"] if d.startswith("metrics/")} == reports
    assert stage["outs"] == [{"metrics/hub.meta.json": {"cache": False}}]
    assert stage["metrics"] == [{"metrics/hub.json": {"cache": False}}]


def test_dvc_yaml_passes_every_input_of_publish_and_depends_on_it():
    """Like every stage, publish takes its files from the command dvc.yaml runs (the options' defaults
    only serve a dry run by hand), and each file it is given is a dependency."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["publish"]
    words = stage["cmd"].split()
    given = dict(zip(words[2::2], words[3::2], strict=True))
    assert set(given) == {"--" + name.replace("_", "-") for name in INPUTS} | {"--metrics"}
    for option, (default, _) in INPUTS.items():
        path = given["--" + option.replace("_", "-")]
        assert path == default, option
        assert any(Path(path) == Path(d) or Path(d) in Path(path).parents or Path(path) in Path(d).parents
                   for d in stage["deps"]), path  # fmt: skip


def test_no_secret_reaches_the_plan_its_files_or_the_log(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog, capfd
):
    password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_ENDPOINT", f"https://bob:{password}@hub.example")  # hub.endpoint: null
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    dry = publish("--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("Publish plan for https://***@hub.example (new repos private)")
    planned = publish()  # hub.push: false
    assert planned.exit_code == 0, planned.output
    plan = read_hub(project)[1]
    assert plan["endpoint"] == "https://***@hub.example"
    assert plan["plan"][0]["url"] == f"https://***@hub.example/datasets/{DATASETS['instructions']}"
    captured = capfd.readouterr()
    files = [(project / "metrics" / name).read_text() for name in ("hub.json", "hub.meta.json")]
    for text in (dry.output, planned.output, caplog.text, captured.out, captured.err, *files):
        assert password not in text and TOKEN not in text
