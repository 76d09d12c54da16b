"""Publish the datasets, the DPO adapter and the classifiers to the Hugging Face Hub, with cards.

Four kinds of repos, one commit each:
- dataset `instructions`: `data/instructions/curated.jsonl` as Parquet (split train);
- dataset `preferences`: `data/preferences/sets/` as one config per format (pairwise, kto, binary),
  splits train / test (the held-out `eval` files);
- model `dpo`: the PEFT files of `models/dpo/adapter/`;
- model `classifier/<name>`: `models/classifier/<name>/` for each name in `hub.classifiers`.

Every repo gets a README.md card (metadata + body: licences with row counts, generating / judging
models, judge reliability, hyper-parameters, eval metrics with CIs, git commit, dvc.lock md5s). An
artifact whose licence set holds an id outside `hub.allowed_licenses` is refused unless the id is in
`hub.override_licenses`. With `hub.push: false` (the DVC stage's default) or `--dry-run` nothing is
sent: the plan (repos, files, sizes, licences) is written or printed. The token comes from HF_TOKEN only.
The stage writes its figures (repos planned / pushed / refused, files, rows) to metrics/hub.json and the
whole plan (repo ids, licence sets, refusals, commit SHAs) to metrics/hub.meta.json. Cards take the
models, usage and provenance from the other stages' reports, `metrics/<stage>.meta.json`: their
metrics/<stage>.json hold numbers only.
Every file it reads is a command option (dvc.yaml passes each; the defaults are the pipeline's paths, for
a dry run by hand); the params it reads are typed: `hub`, `dpo` (the adapter's card), the published
`classifier.encoders.<name>` and `translate.sources` (the cards' source datasets).
This stage reads the project and decides; jalign.hub_cards renders the cards, jalign.hub uploads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from jalign.config import as_dict, load_section
from jalign.hub import (
    UNKNOWN,
    LicenseError,
    LicenseTally,
    PublishError,
    UploadFile,
    check_licenses,
    lock_inputs,
    normalize_license,
    push_repo,
    redact,
    with_normalized_licenses,
    write_parquet,
)
from jalign.hub_cards import (
    CardFacts,
    card_license,
    classifier_results,
    dataset_card,
    eval_results,
    funnel_section,
    git_commit,
    judge_section,
    model_card,
    usage_models,
)
from jalign.models import MANIFEST, PACKAGED
from jalign.params import DPOConfig, EncoderConfig, HubConfig, TranslateConfig
from jalign.records import RecordError, json_error, line_of, read_jsonl
from jalign.sources import SourceConfig
from jalign.stage import log, log_params, meta_path_for, setup_logging, write_metrics

FORMATS = ("pairwise", "kto", "binary")
SPLITS = {"train": "train", "eval": "test"}  # file suffix -> Hub split
DEFAULT_ENDPOINT = "https://huggingface.co"
# Never uploaded from a model folder: our card replaces PEFT's README; training_args.bin is a pickle.
SKIP_MODEL_FILES = frozenset({"README.md", "training_args.bin"})

# The Hub ids behind the packaged models (jalign_model.json `name`), for `base_model` in model cards.
UPSTREAM_IDS = {
    "gemma-3-270m": "google/gemma-3-270m",
    "multilingual-e5-small": "intfloat/multilingual-e5-small",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


@dataclass(frozen=True)
class Inputs:
    """The files a publish reads, as the command's options name them (dvc.yaml passes each one; its
    deps list the same paths). Cards read the stage reports (`.meta.json`): usage, model identities,
    provenance and text fields such as the judge method are not in the numbers-only metrics files."""

    instructions: str  # data/instructions/curated.jsonl
    preference_sets: str  # data/preferences/sets (<format>_<split>.jsonl)
    dpo_adapter: str  # models/dpo/adapter
    classifiers: str  # models/classifier (<name>/ per published encoder)
    classifier_reports: str  # metrics/classifier (<name>.meta.json)
    self_instruct_report: str
    evolve_report: str
    curate_report: str
    translate_report: str
    respond_report: str
    decide_report: str  # the judge reliability figures (metrics/judge.meta.json)
    sets_report: str
    dpo_report: str
    eval_report: str

    @property
    def instruction_reports(self) -> tuple[str, ...]:
        """Their `usage.<role>.model` name the models behind the instructions."""
        return (self.self_instruct_report, self.evolve_report, self.curate_report)

    @property
    def preference_reports(self) -> tuple[str, ...]:
        return (self.translate_report, self.respond_report, self.decide_report)


@dataclass(frozen=True)
class BaseModel:
    ref: str  # as written in params / adapter_config
    license: str
    hub_id: str | None  # for card metadata `base_model`
    origin: str  # where the licence was read, for messages


@dataclass
class RepoPlan:
    """One repo to publish: what goes where, under which licences."""

    artifact: str  # instructions | preferences | dpo | classifier/<name>
    repo_id: str
    repo_type: str  # dataset | model
    files: list[UploadFile]
    tally: LicenseTally
    rows: dict[str, int]  # dataset: "<config>/<split>" -> rows; model: training rows per file
    card_license: dict[str, str]
    overridden: list[str]
    refusal: str | None
    file_rows: dict[str, int] = field(default_factory=dict)  # dataset: path in repo -> rows

    def summary(self, endpoint: str) -> dict[str, Any]:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return {
            "artifact": self.artifact,
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "url": f"{endpoint}/{prefix}{self.repo_id}",
            **self.card_license,
            "licenses": self.tally.as_dict(),
            "overridden": self.overridden,
            "refused": self.refusal,
            "rows": self.rows,
            "files": [{"path": f.path_in_repo, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


# -- reading the project ------------------------------------------------------------------------------


@dataclass
class Project:
    """What a publish reads: files relative to `root` (stage reports and dvc.lock are optional) and the
    params of the stages whose outputs it publishes."""

    root: Path
    inputs: Inputs
    dpo: DPOConfig
    sources: tuple[SourceConfig, ...]  # translate.sources
    encoders: dict[str, EncoderConfig]  # classifier.encoders of the published classifiers

    def path(self, rel: str) -> Path:
        return self.root / rel

    def json(self, rel: str | Path) -> dict[str, Any] | None:
        """A JSON object file of the project (or an absolute path); None when absent; a bad one names
        its file and line."""
        path = Path(rel) if Path(rel).is_absolute() else self.path(str(rel))
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RecordError(f"{rel}:{exc.lineno}: not valid JSON ({json_error(exc)})") from exc
        if not isinstance(data, dict):
            raise RecordError(f"{rel}: expected a JSON object")
        return data

    def lock(self) -> dict[str, Any]:
        path = self.path("dvc.lock")
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise RecordError(f"dvc.lock:{mark.line + 1 if mark else '?'}: not valid YAML") from exc
        if not isinstance(data, dict):
            raise RecordError("dvc.lock: expected a mapping")
        return data


def base_model(project: Project, ref: str | None, config: HubConfig) -> BaseModel:
    """The base model's licence: hub.base_model_licenses, else jalign_model.json, else `unknown`."""
    if not ref:
        return BaseModel("", UNKNOWN, None, "base model not recorded")
    hub_id, licence, origin = None, UNKNOWN, "licence not recorded"
    manifest = Path(ref) / MANIFEST if Path(ref).is_absolute() else project.path(ref) / MANIFEST
    if manifest.exists():
        info = project.json(manifest) or {}
        licence, origin = normalize_license(str(info.get("license") or UNKNOWN)), f"{ref}/{MANIFEST}"
        hub_id = UPSTREAM_IDS.get(info.get("name", ""))
    elif ref.startswith("pkg:") and ref[4:] in PACKAGED:
        licence, origin = normalize_license(PACKAGED[ref[4:]].license), "jalign.models.PACKAGED"
        hub_id = UPSTREAM_IDS.get(ref[4:])
    elif re.match(r"^[\w.-]+/[\w.-]+(@\w+)?$", ref) and not project.path(ref).exists():
        hub_id = ref.split("@")[0]
    if ref in config.base_model_licenses:
        licence, origin = normalize_license(config.base_model_licenses[ref]), "hub.base_model_licenses"
    return BaseModel(ref, licence, hub_id, origin)


def models_of(project: Project, reports: tuple[str, ...]) -> list[dict[str, str]]:
    """The models behind an artifact, from its stages' reports (`usage`)."""
    return usage_models({rel: project.json(rel) for rel in reports})


def card_facts(
    project: Project,
    tally: LicenseTally,
    overridden: list[str],
    models: list[dict[str, str]],
    report_rel: str,
    artifact_path: str,
) -> CardFacts:
    """What every card states; the commit from the artifact's stage report, its inputs from dvc.lock."""
    return CardFacts(
        tally=tally,
        license=card_license(tally.licenses),
        overridden=overridden,
        models=models,
        commit=git_commit(project.json(report_rel)),
        lock_entry=lock_inputs(project.lock(), artifact_path),
    )


def without_provenance(report: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (report or {}).items() if k not in ("provenance", "usage")}


# -- licence decisions --------------------------------------------------------------------------------


def decide(repo_id: str, tally: LicenseTally, config: HubConfig) -> tuple[list[str], str | None]:
    """(ids accepted by override, the one-line refusal or None)."""
    try:
        return check_licenses(repo_id, tally, config.allowed_licenses, config.override_licenses), None
    except LicenseError as exc:
        return [], str(exc)


# -- dataset repos -----------------------------------------------------------------------------------


def dataset_plan(
    project: Project,
    config: HubConfig,
    artifact: str,
    repo_name: str,
    splits: list[tuple[str, str, str]],  # (config name, Hub split, source file)
    card: dict[str, Any],
    work: Path,
) -> RepoPlan:
    repo_id = config.repo_id(repo_name)
    out = work / repo_name
    tally = LicenseTally()
    files, rows, configs, file_rows = [], {}, {}, {}
    for config_name, split, rel in splits:
        records = read_jsonl(project.path(rel))
        tally.add_rows(records, rel)
        rows[f"{config_name}/{split}"] = len(records)
        if not records:  # an empty split gets no file (the loader would fail on it)
            continue
        path_in_repo = f"{'data' if config_name == 'default' else config_name}/{split}-00000-of-00001.parquet"
        published = [
            with_normalized_licenses(r, f"{rel}:{line_of(records, i)}") for i, r in enumerate(records)
        ]
        write_parquet(published, out / path_in_repo, rel)
        files.append(UploadFile.of(path_in_repo, out / path_in_repo))
        file_rows[path_in_repo] = len(records)
        configs.setdefault(config_name, []).append({"split": split, "path": path_in_repo})
    overridden, refusal = decide(repo_id, tally, config)
    models = models_of(project, card["usage_reports"])
    facts = card_facts(project, tally, overridden, models, card["report"], card["artifact_path"])
    readme = out / "README.md"
    readme.parent.mkdir(parents=True, exist_ok=True)  # a dataset whose splits are all empty has no files yet
    readme.write_text(dataset_card(card, facts, rows, configs), encoding="utf-8")
    files.append(UploadFile.of("README.md", readme))
    return RepoPlan(
        artifact, repo_id, "dataset", files, tally, rows, facts.license, overridden, refusal, file_rows
    )


def source_datasets(project: Project) -> list[str]:
    """`extended|<hub id>` for every Hub source of the translated prompts; `original` for local ones."""
    found = {f"extended|{s.hf_dataset}" if s.hf_dataset else "original" for s in project.sources}
    return sorted(found) or ["original"]


def plan_instructions(project: Project, config: HubConfig, work: Path) -> RepoPlan:
    inputs = project.inputs
    card = {
        "pretty_name": "jalign Japanese instructions",
        "summary": (
            "Japanese instruction / response pairs grown from hand-written seeds by Self-Instruct and "
            "Evol-Instruct, deduplicated by character-level ROUGE-L, decontaminated against the evaluation "
            "prompts and filtered on LLM quality / difficulty tags (Magpie-style), built by the jalign "
            "DVC pipeline. Each row keeps its `source`, lineage, tags and per-row `license` / `model_terms`."
        ),
        "source_datasets": ["original"],
        "task_categories": ["text-generation"],
        "tags": ["jalign", "japanese", "synthetic", "instruction-tuning", "self-instruct", "evol-instruct"],
        "usage_reports": inputs.instruction_reports,
        "extra": [funnel_section(project.json(inputs.curate_report), inputs.curate_report)],
        "artifact_path": inputs.instructions,
        "report": inputs.curate_report,
    }
    return dataset_plan(
        project,
        config,
        "instructions",
        config.instructions_repo,
        [("default", "train", inputs.instructions)],
        card,
        work,
    )


def plan_preferences(project: Project, config: HubConfig, work: Path) -> RepoPlan:
    inputs = project.inputs
    splits = [
        (fmt_, hub, f"{inputs.preference_sets}/{fmt_}_{suffix}.jsonl")
        for fmt_ in FORMATS
        for suffix, hub in SPLITS.items()
    ]
    card = {
        "pretty_name": "jalign Japanese preference pairs",
        "summary": (
            "Japanese preference data: translated and curated prompts answered by two responders, judged "
            "pairwise twice with positions swapped (kept only when both orders agree), decontaminated and "
            "split by prompt. Configs: `pairwise` (conversational prompt / chosen / rejected, for DPO and "
            "IPO), `kto` (prompt / completion / label), `binary` (text / label 1 = chosen, 0 = rejected, "
            "for reward classifiers). `test` is the held-out split."
        ),
        "source_datasets": source_datasets(project),
        "task_categories": ["text-generation", "text-classification"],
        "tags": ["jalign", "japanese", "preference", "dpo", "kto", "reward-modeling", "synthetic"],
        "usage_reports": inputs.preference_reports,
        "extra": [judge_section(project.json(inputs.decide_report), inputs.decide_report)],
        "artifact_path": inputs.preference_sets,
        "report": inputs.sets_report,
    }
    return dataset_plan(project, config, "preferences", config.preferences_repo, splits, card, work)


# -- model repos -------------------------------------------------------------------------------------


def model_files(directory: Path) -> list[UploadFile]:
    """Every file of a model folder except our card's predecessor, pickles and checkpoints."""
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if (
            rel in SKIP_MODEL_FILES
            or rel.startswith("checkpoints/")
            or any(s.startswith(".") for s in rel.split("/"))
        ):
            continue
        files.append(UploadFile.of(rel, path))
    return files


def model_plan(
    project: Project,
    config: HubConfig,
    artifact: str,
    repo_name: str,
    directory: str,
    training_files: list[str],
    base: BaseModel,
    card: dict[str, Any],
    work: Path,
) -> RepoPlan:
    repo_id = config.repo_id(repo_name)
    tally, rows = LicenseTally(), {}
    for rel in training_files:
        records = read_jsonl(project.path(rel))
        tally.add_rows(records, rel)
        rows[rel] = len(records)
    tally.add_model(base.license, f"{base.ref or 'unknown'} ({base.origin})")
    overridden, refusal = decide(repo_id, tally, config)
    files = model_files(project.path(directory))
    # Files are read in card order (models, judge, provenance): a bad one is reported as it always was.
    models = models_of(project, card["usage_reports"])
    judge = judge_section(project.json(project.inputs.decide_report), project.inputs.decide_report)
    facts = card_facts(project, tally, overridden, models, card["report"], directory)
    text = model_card(
        card,
        facts,
        repo_id=repo_id,
        rows=rows,
        datasets=[config.repo_id(config.preferences_repo), *card.get("extra_datasets", [])],
        base_hub_id=base.hub_id,
        base_ref=base.ref,
        judge=judge,
    )
    readme = work / repo_name / "README.md"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text, encoding="utf-8")
    files.append(UploadFile.of("README.md", readme))
    return RepoPlan(artifact, repo_id, "model", files, tally, rows, facts.license, overridden, refusal)


def plan_dpo(project: Project, config: HubConfig, work: Path) -> RepoPlan:
    inputs, dpo = project.inputs, project.dpo
    adapter_config = project.path(inputs.dpo_adapter) / "adapter_config.json"
    if not adapter_config.exists():
        raise RecordError(f"{adapter_config}: file not found (run the dpo stage first)")
    peft = project.json(adapter_config) or {}
    training = [f"{inputs.preference_sets}/{'kto' if dpo.loss == 'kto' else 'pairwise'}_train.jsonl"]
    extra_datasets, usage = [], inputs.preference_reports
    if dpo.start_from_sft:  # the SFT adapter's data is in the weights too
        training.append(inputs.instructions)
        extra_datasets, usage = (
            [config.repo_id(config.instructions_repo)],
            inputs.preference_reports + inputs.instruction_reports,
        )
    base = base_model(project, peft.get("base_model_name_or_path") or dpo.model, config)
    method = {"sigmoid": "DPO", "ipo": "IPO", "kto": "KTO"}[dpo.loss]
    entries, eval_text = eval_results(
        project.json(inputs.eval_report), inputs.eval_report, config.eval_candidate, config.dpo_repo
    )
    qlora = dpo.quantization == "nf4"
    card = {
        "summary": (
            f"A LoRA adapter for {{base}} tuned with {method} (TRL, loss `{dpo.loss}`, β {dpo.beta}, "
            f"{'QLoRA: 4-bit NF4 base' if qlora else 'full-precision base'}) on "
            "jalign's Japanese preference pairs, with the adapter-disabled base as the reference model."
        ),
        "usage": (
            "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")\n'
            'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")'
        ),
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["jalign", "japanese", "trl", dpo.loss if dpo.loss != "sigmoid" else "dpo", "peft", "lora"]
        + (["qlora"] if qlora else []),
        "extra_datasets": extra_datasets,
        "usage_reports": usage,
        "params": {"dpo": as_dict(dpo)},
        "train_metrics": without_provenance(project.json(inputs.dpo_report)),
        "eval_results": entries,
        "eval_text": eval_text,
        "report": inputs.dpo_report,
    }
    return model_plan(project, config, "dpo", config.dpo_repo, inputs.dpo_adapter, training, base, card, work)


def plan_classifier(project: Project, config: HubConfig, name: str, work: Path) -> RepoPlan:
    inputs = project.inputs
    directory = f"{inputs.classifiers}/{name}"
    model_config = project.path(directory) / "config.json"
    if not model_config.exists():
        raise RecordError(f"{model_config}: file not found (run the classifier@{name} stage first)")
    encoder = project.encoders[name]
    ref = encoder.model or (project.json(model_config) or {}).get("_name_or_path")
    base = base_model(project, ref, config)
    report_rel = f"{inputs.classifier_reports}/{name}.meta.json"
    metrics = without_provenance(project.json(report_rel))
    repo_name = config.classifier_repo.replace("{name}", name)
    entries, eval_text = classifier_results(metrics, config.repo_id(config.preferences_repo))
    card = {
        "summary": (
            "A Japanese preference classifier (reward model) fine-tuned from {base} on single texts: label 1 "
            "= the text holds the chosen answer, 0 = the rejected one; the logit margin is the reward "
            "(GENIAC). Pairwise accuracy counts held-out pairs where reward(chosen) > reward(rejected)."
        ),
        "usage": (
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            'model = AutoModelForSequenceClassification.from_pretrained("{repo_id}")\n'
            'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")'
        ),
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["jalign", "japanese", "reward-model", "text-classification"],
        "usage_reports": inputs.preference_reports,
        "params": {f"classifier.encoders.{name}": as_dict(encoder)},
        "train_metrics": metrics,
        "eval_results": entries,
        "eval_text": eval_text,
        "report": report_rel,
    }
    training = [f"{inputs.preference_sets}/binary_train.jsonl"]
    return model_plan(project, config, f"classifier/{name}", repo_name, directory, training, base, card, work)


def build_plans(project: Project, config: HubConfig, work: Path) -> list[RepoPlan]:
    """Every repo to publish, with its files written under `work` and its licence decision made."""
    plans = [
        plan_instructions(project, config, work),
        plan_preferences(project, config, work),
        plan_dpo(project, config, work),
    ]
    plans += [plan_classifier(project, config, name, work) for name in config.classifiers]
    return plans


# -- pushing and reporting ---------------------------------------------------------------------------


def resolve_endpoint(config: HubConfig) -> str:
    return (config.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def push_plans(
    plans: list[RepoPlan], config: HubConfig, token: str, endpoint: str
) -> dict[str, dict[str, Any]]:
    """Push every plan (refused ones must have been stopped before); errors come back redacted."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    api = HfApi(endpoint=endpoint, token=token, library_name="jalign")
    results = {}
    for plan in plans:
        try:
            results[plan.artifact] = push_repo(
                api,
                plan.repo_id,
                plan.repo_type,
                plan.files,
                private=config.private,
                message=f"jalign publish: {plan.artifact}",
                description=f"Published by `jalign publish` ({len(plan.files)} files).",
            )
        except Exception as exc:  # any client / HTTP error: re-raised without the token
            raise PublishError(
                redact(f"{plan.repo_type} {plan.repo_id}: {type(exc).__name__}: {exc}", [token])
            ) from None
        done = results[plan.artifact]
        state = "new commit" if done["committed"] else "unchanged, no commit"
        log.info("%s -> %s %s: %s (%s)", plan.artifact, plan.repo_type, plan.repo_id, done["commit"], state)
    return results


def figures(plans: list[RepoPlan], pushed: dict[str, dict] | None) -> dict[str, Any]:
    """What metrics/hub.json compares across runs: counts under short keys that do not change between
    runs (artifact names; never repo ids, licence ids or file paths), few enough for one `dvc metrics
    show` row. Byte sizes stay in the plan: a card holds timings, so its size moves with the machine."""
    repos = {}
    for plan in plans:
        entry = {
            "rows": sum(plan.rows.values()),
            "licenses": len(plan.tally.licenses),
            "refused": int(plan.refusal is not None),
        }
        if pushed is not None:
            entry["committed"] = int(bool(pushed[plan.artifact]["committed"]))
        repos[plan.artifact] = entry
    return {
        "planned": len(plans),
        "pushed": len(pushed or {}),
        "committed": sum(e.get("committed", 0) for e in repos.values()),
        "refused": sum(e["refused"] for e in repos.values()),
        "overridden": sum(1 for p in plans if p.overridden),
        "files": sum(len(p.files) for p in plans),
        "repos": repos,
    }


def report(plans: list[RepoPlan], config: HubConfig, endpoint: str, pushed: dict[str, dict] | None) -> dict:
    """The stage's report for write_metrics: the figures, then the plan (repo ids, licence sets with rows
    per file, refusals, commit SHAs) as strings and lists, which stay in metrics/hub.meta.json only."""
    public_endpoint = redact(endpoint, [])
    entries = []
    for plan in plans:
        entry = plan.summary(public_endpoint)
        entry.update((pushed or {}).get(plan.artifact) or {"commit": None, "committed": None})
        entries.append(entry)
    return {
        **figures(plans, pushed),
        "endpoint": public_endpoint,
        "namespace": config.namespace,
        "private": config.private,
        "refusals": [p.refusal for p in plans if p.refusal],
        "plan": entries,
    }


PLAN_WIDTH = 120  # the dry run's plan fits a 120-column terminal; long licence sets and file lists wrap


def human_size(size: float) -> str:
    """Decimal units, as the Hub shows sizes: 568 B, 22.4 kB, 470.6 MB."""
    if size < 1000:
        return f"{int(size)} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size:.1f} TB"


def wrapped(first: str, items: list[str], indent: int, width: int = PLAN_WIDTH) -> list[str]:
    """`first` (its own spacing included) then the items joined by ", ", going on in lines indented by
    `indent` columns."""
    lines, line, empty = [], first, True
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if not empty and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line, empty = " " * indent, True
        line += ("" if empty else " ") + piece
        empty = False
    return [*lines, line]


def render_plan(plans: list[RepoPlan], config: HubConfig, endpoint: str) -> str:
    """The dry run's plan on one screen: a row per repo with its licence set counted, each repo's files
    on a line or two, and each refusal on one line with its fix."""
    visibility = "private" if config.private else "public"
    header = f"Publish plan for {redact(endpoint, [])} (new repos {visibility}); a dry run sends nothing."
    lines = [header, ""]
    head = ["repo", "type", "files", "size", "rows"]
    rows = [
        [
            p.repo_id,
            p.repo_type,
            str(len(p.files)),
            human_size(sum(f.size for f in p.files)),
            str(sum(p.rows.values())),
        ]
        for p in plans
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def cells(row: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    lines.append(f"{cells(head)}  licences ×rows (base: the base model's)")
    for plan, row in zip(plans, rows, strict=True):
        first = f"{cells(row)}  "
        lines += wrapped(first, plan.tally.counted(plan.overridden), len(first))
    lines += ["", "Files (dataset files with their rows):"]
    for plan in plans:
        items = []
        for f in plan.files:
            n = plan.file_rows.get(f.path_in_repo)
            rows_text = "" if n is None else f"{n} row{'' if n == 1 else 's'}, "
            items.append(f"{f.path_in_repo} ({rows_text}{human_size(f.size)})")
        lines += wrapped(f"{plan.repo_id}: ", items, 4)
    refused = [p.refusal for p in plans if p.refusal]
    if refused:
        lines += ["", f"Refused ({len(refused)} of {len(plans)}; a push stops before sending anything):"]
        lines += refused
    return "\n".join(lines)


def refusals(plans: list[RepoPlan]) -> str:
    """Every refusal, one line each."""
    return "\n".join(p.refusal for p in plans if p.refusal)


# The pipeline's paths, which dvc.yaml passes explicitly (its deps list the same): the defaults serve a
# dry run by hand (`jalign publish --dry-run`).
INPUTS = {
    "instructions": ("data/instructions/curated.jsonl", "the curated instructions"),
    "preference_sets": ("data/preferences/sets", "the preference sets (<format>_<split>.jsonl)"),
    "dpo_adapter": ("models/dpo/adapter", "the DPO adapter (PEFT files)"),
    "classifiers": ("models/classifier", "the classifiers, <name>/ each"),
    "classifier_reports": ("metrics/classifier", "the classifier stages' reports, <name>.meta.json each"),
    "self_instruct_report": ("metrics/self_instruct.meta.json", "self_instruct's report"),
    "evolve_report": ("metrics/evolve.meta.json", "evolve's report"),
    "curate_report": ("metrics/instructions.meta.json", "curate's report (the funnel)"),
    "translate_report": ("metrics/translate.meta.json", "translate's report"),
    "respond_report": ("metrics/respond.meta.json", "respond's report"),
    "decide_report": ("metrics/judge.meta.json", "decide's report (judge reliability)"),
    "sets_report": ("metrics/preferences.meta.json", "preferences' report"),
    "dpo_report": ("metrics/dpo.meta.json", "dpo's report (training figures)"),
    "eval_report": ("metrics/eval.meta.json", "score's report (eval results)"),
}


def input_options(command):
    """One `--<name>` option per Inputs field."""
    for name, (default, help_text) in reversed(INPUTS.items()):
        flag = "--" + name.replace("_", "-")
        command = click.option(flag, name, default=default, show_default=True, help=help_text)(command)
    return command


@click.command("publish")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be uploaded where; send nothing, need no token."
)
@input_options
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option(
    "--metrics",
    "metrics_path",
    default="metrics/hub.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Figures; the whole plan goes to the .meta.json beside it.",
)
def main(dry_run: bool, params_path: str, metrics_path: str, **paths: str) -> None:
    """Publish datasets, the DPO adapter and the classifiers to the Hub (hub.push), or plan it."""
    setup_logging()
    config = load_section(HubConfig, "hub", params_path)
    if not dry_run:  # the dry run's plan states what it needs; a params log line would only widen it
        log_params("hub", config)
    project = Project(
        Path("."),
        Inputs(**paths),
        dpo=load_section(DPOConfig, "dpo", params_path),
        sources=load_section(TranslateConfig, "translate", params_path).sources,
        encoders={
            name: load_section(EncoderConfig, f"classifier.encoders.{name}", params_path)
            for name in config.classifiers
        },
    )
    endpoint = resolve_endpoint(config)
    with tempfile.TemporaryDirectory(prefix="jalign-publish-") as work:
        try:
            plans = build_plans(project, config, Path(work))
        except RecordError as exc:  # a missing artifact or a bad row: file, line and field
            hint = " (`dvc pull` fetches this commit's outputs; `dvc repro` makes them)"
            raise click.ClickException(f"{exc}{hint if 'not found' in str(exc) else ''}") from None
        if dry_run:
            click.echo(render_plan(plans, config, endpoint))
            refused = sum(1 for p in plans if p.refusal)
            if refused:
                raise click.ClickException(f"{refused} of {len(plans)} repos refused (see above)")
            return
        if not config.push:
            for plan in plans:
                if plan.refusal:
                    log.warning("plan only (hub.push false); a push would stop: %s", plan.refusal)
            write_metrics(metrics_path, report(plans, config, endpoint, None))
            log.info(
                "hub.push is false: wrote the plan to %s, its figures to %s",
                meta_path_for(metrics_path),
                metrics_path,
            )
            return
        if refusals(plans):
            raise click.ClickException(refusals(plans))
        token = os.environ.get("HF_TOKEN")
        if not token:
            raise click.ClickException("HF_TOKEN is not set: the Hub token comes only from the environment")
        try:
            pushed = push_plans(plans, config, token, endpoint)
        except PublishError as exc:
            raise click.ClickException(str(exc)) from None
        write_metrics(metrics_path, report(plans, config, endpoint, pushed))
