"""Every params.yaml section's schema: one frozen, documented dataclass per section, named after the
stage that reads it (`dpo` -> DPOConfig, `decide` -> DecideConfig, `score` -> ScoreConfig ...).

Stages, `jalign params` and tests import the schemas from here, so no stage imports another stage to read
a section. A field declares its help text and range once (`jalign.config.param`); docs/params.md is
generated from them (`jalign params docs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jalign import prompts
from jalign.config import param
from jalign.evalsets import EvalSet
from jalign.hub import UNKNOWN, normalize_license
from jalign.ifeval.compose import SPECS_PATH, load_specs
from jalign.llm.types import LLMConfig
from jalign.models import PACKAGED
from jalign.sources import SourceConfig
from jalign.training import LoraSettings, check_trainer_choices

# Magpie's task categories, lettered as in the prompt file (curate's tagger answers a letter).
CATEGORY = dict(
    zip(
        "ABCDEFGHIJKL",
        (
            "information_seeking",
            "reasoning",
            "planning",
            "editing",
            "coding",
            "math",
            "role_playing",
            "data_analysis",
            "creative_writing",
            "advice_seeking",
            "brainstorming",
            "others",
        ),
        strict=True,
    )
)
_HUB_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def evolve_operations() -> dict[str, dict[str, str]]:
    """The mutations `evolve` knows: name -> its prompt (jalign/prompts/evolve_operations.yaml)."""
    return prompts.load_yaml("evolve_operations")


@dataclass(frozen=True)
class LimitsConfig:
    """params.yaml `limits`: what each LLM stage may lose and spend, unless its own section says."""

    max_failure_rate: float = param(
        "Largest share of a stage's input rows that may be lost to failed LLM calls (rows lost, not "
        "requests sent) before the stage fails; every LLM stage, unless its section sets its own.",
        ge=0,
        le=1,
    )
    budget_usd: float | None = param(
        "USD each LLM stage may spend on priced (remote) models; null = no cap; every LLM stage, unless "
        "its section sets its own.",
        ge=0,
    )


@dataclass(frozen=True)
class ModelsConfig:
    """params.yaml `models`."""

    packaged: tuple[str, ...] = param(
        "Packaged models to materialise into models/base/<name> (see jalign.models.PACKAGED)."
    )

    def __post_init__(self) -> None:
        unknown = [name for name in self.packaged if name not in PACKAGED]
        if unknown:
            raise ValueError(f"packaged: unknown model(s) {unknown}; known: {sorted(PACKAGED)}")


@dataclass(frozen=True)
class SelfInstructConfig:
    """params.yaml `self_instruct`."""

    generator: LLMConfig = param("The model that writes new tasks (few-shot continuation for base models).")
    rounds: int = param("Generation rounds; machine examples come from earlier rounds' accepted tasks.", ge=1)
    prompts_per_round: int = param("Prompts (one new task each) per round.", ge=1)
    human_shots: int = param("Seed tasks shown per prompt (Self-Instruct: 6).", ge=1)
    machine_shots: int = param("Earlier generated tasks shown per prompt (Self-Instruct: 2).", ge=0)
    seed: int = param("Seed for sampling examples and viewpoints.", ge=0)
    min_instruction_chars: int = param("Shorter instructions are dropped.", ge=1)
    max_instruction_chars: int = param("Longer instructions are dropped.", ge=1)
    min_output_chars: int = param("Shorter outputs are dropped.", ge=0)
    max_output_chars: int = param("Longer outputs are dropped.", ge=1)
    blocklist: tuple[str, ...] = param(
        "Keywords of tasks a text-only model cannot do (画像, ファイル ...): "
        "Self-Instruct's filter in Japanese."
    )
    min_japanese_ratio: float = param("Share of Japanese characters a task needs.", ge=0, le=1)
    rouge_threshold: float = param(
        "A task is kept only if its character ROUGE-L F1 to every task so far is at most this "
        "(Self-Instruct: 0.7).",
        ge=0,
        le=1,
    )
    max_failure_rate: float = param(
        "Largest share of prompts that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")
    license: str = param(
        "Licence of the seed tasks; every generated row carries it (and the generator's terms)."
    )

    def __post_init__(self) -> None:
        if self.min_instruction_chars > self.max_instruction_chars:
            raise ValueError("min_instruction_chars must be <= max_instruction_chars")
        if self.min_output_chars > self.max_output_chars:
            raise ValueError("min_output_chars must be <= max_output_chars")


@dataclass(frozen=True, kw_only=True)  # optional fields sit beside their kin
class EvolveConfig:
    """params.yaml `evolve`."""

    generator: LLMConfig = param("Writes the mutated instruction.")
    responder: LLMConfig = param("Answers each surviving rewrite.")
    judge: LLMConfig = param("Decides information gain as a choice-constrained はい/いいえ.")
    rounds: int = param("Evolution rounds, each on the previous round's survivors (WizardLM ran 4).", ge=0)
    operations: tuple[str, ...] = param(
        "Mutations to sample from: constraints, deepen, concretize, reasoning, complicate_input (in-depth), "
        "breadth (in-breadth), verifiable (appends 1-3 verifiable instructions by rule; no LLM rewrite)."
    )
    max_instructions: int | None = param(
        "Evolve only the first N inputs (small CPU profiles); absent or null: all.", ge=1, default=None
    )
    seed: int = param("Seed for choosing each parent's mutation.", ge=0)
    min_gain_prob: float = param("P(はい) below this: no information gain, eliminated.", ge=0, le=1)
    min_choice_mass: float = param(
        "P(はい) + P(いいえ) below this: the judge answered neither; dropped, not guessed.", ge=0, le=1
    )
    min_output_chars: int = param("Shorter answers are eliminated.", ge=0)
    max_instruction_chars: int = param("Longer rewrites are eliminated.", ge=1)
    min_japanese_ratio: float = param("Share of Japanese characters a rewrite needs.", ge=0, le=1)
    refusal_markers: tuple[str, ...] = param("Words of a refusal or apology (申し訳, できません ...).")
    refusal_max_chars: int = param("A refusal marker in an answer shorter than this: a refusal.", ge=0)
    template_markers: tuple[str, ...] = param("Template words a rewrite or answer must not copy.")
    max_failure_rate: float = param(
        "Largest share of parents that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        unknown = [op for op in self.operations if op not in evolve_operations()]
        if unknown or not self.operations:
            raise ValueError(f"operations: unknown {unknown}; known: {sorted(evolve_operations())}")


@dataclass(frozen=True)
class CurateConfig:
    """params.yaml `curate`. Thresholds apply to the probability-weighted score on the 1..5 scale
    (G-Eval, Liu et al. 2023), steadier than the argmax label with small judges; min_quality also
    holds for the quality tag itself (the argmax level), so that a kept row is never tagged below it."""

    tagger: LLMConfig = param("Tags quality, difficulty and category as choice-constrained distributions.")
    min_quality: float = param(
        "Lowest input quality kept (1 very poor .. 5 excellent; Magpie keeps 3 = average and up): both the "
        "expected score and the most likely tag must reach it (2.0 drops a row tagged very_poor).",
        ge=1,
        le=5,
    )
    min_difficulty: float = param("Lowest expected difficulty kept (1 very easy .. 5 very hard).", ge=1, le=5)
    max_difficulty: float = param("Highest expected difficulty kept.", ge=1, le=5)
    drop_categories: tuple[str, ...] = param("Magpie task categories to drop, e.g. [others].")
    dedup_threshold: float = param(
        "Character ROUGE-L F1 above this between two instructions: near-duplicate.", ge=0, le=1
    )
    contamination_threshold: float = param(
        "Character ROUGE-L F1 above this to any evaluation prompt: dropped (contamination).", ge=0, le=1
    )
    min_choice_mass: float = param(
        "Probability the tagger put on the offered answers; below it the row has no tag and is dropped.",
        ge=0,
        le=1,
    )
    max_failure_rate: float = param(
        "Largest share of instructions that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        if self.min_difficulty > self.max_difficulty:
            raise ValueError("min_difficulty must be <= max_difficulty")
        unknown = set(self.drop_categories) - set(CATEGORY.values())
        if unknown:
            raise ValueError(
                f"drop_categories: unknown {sorted(unknown)}; known: {sorted(CATEGORY.values())}"
            )


@dataclass(frozen=True)
class TranslateConfig:
    """params.yaml `translate`."""

    translator: LLMConfig = param("Writes the first Japanese draft of each source prompt.")
    reviewer: LLMConfig = param("Sees the source and the draft and writes the improved translation (Karasu).")
    sources: tuple[SourceConfig, ...] = param("English source prompt datasets, each with its licence.")
    english_specific: Literal["localize", "drop", "keep"] = param(
        "Prompts about English itself (alphabetical order, rhymes, spelling ...): localise them "
        "(あいうえお順 ...), drop them with the reason, or translate them literally."
    )
    min_japanese_ratio: float = param(
        "Share of Japanese characters a translation needs (code and proper nouns stay Latin).", ge=0, le=1
    )
    max_chars: int = param("Longer source prompts are dropped (too_long).", ge=1)
    max_failure_rate: float = param(
        "Largest share of source prompts that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"sources: need at least one, with distinct names, got {names}")


@dataclass(frozen=True)
class ResponderConfig:
    """One entry of `respond.responders`."""

    name: str = param("Stable label of this responder in pairs and win shares.")
    llm: LLMConfig = param("The model that answers.")
    system: str = param("System message (Karasu set one per responder to raise answer quality); '' = none.")
    template: str | None = param(
        "Prompt template wrapping the user prompt: `respond` is a few-shot frame for base models; null "
        "sends the prompt as it is (chat models)."
    )


@dataclass(frozen=True)
class RespondConfig:
    """params.yaml `respond`."""

    responders: tuple[ResponderConfig, ...] = param(
        "Two or more responders; every prompt is answered by each."
    )
    include_instructions: bool = param("Also answer the curated instructions of the instruction half.")
    max_prompts: int | None = param("Answer only the first N prompts (small CPU profiles); null = all.", ge=1)
    max_failure_rate: float = param(
        "Largest share of prompts that may lose an answer to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        names = [r.name for r in self.responders]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"responders: need two or more with distinct names, got {names}")


@dataclass(frozen=True, kw_only=True)  # optional fields sit beside their kin
class JudgeConfig:
    """params.yaml `judge`: how the `judge` stage asks for judgments (what they mean is `decide`'s)."""

    judge: LLMConfig = param("The judge model.")
    method: Literal["text", "logprob", "reward"] = param(
        "text: explanation + [[A]]/[[B]]/[[C]], parsed strictly; logprob: P(A) vs P(B) from next-token "
        "log-probs (small local judges); reward: a trained preference classifier's reward margin."
    )
    reward_model: str | None = param(
        "method reward: a classifier from the classifier stage (models/classifier/<name>).", default=None
    )
    reask_invalid: bool = param("text: re-ask once (new seed) when an answer fails or has no verdict.")
    canary_pairs: int = param(
        "Pairs re-judged with an injected plea appended to one answer, to measure how many outcomes an "
        "injection changes (2 extra calls per pair); 0 = off.",
        ge=0,
    )
    max_failure_rate: float = param(
        "Largest share of pairs that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        if self.method == "reward" and not self.reward_model:
            raise ValueError("method reward needs reward_model (e.g. models/classifier/<name>)")


@dataclass(frozen=True)
class DecideConfig:
    """params.yaml `decide`: how the `decide` stage reads the stored judgments (no LLM call), so
    `-S decide.tie_margin=...` re-decides without judging again."""

    tie_margin: float = param(
        "logprob / reward: |P(A) - P(B)| (or the reward gap) at most this is a tie.", ge=0, lt=1
    )
    calibrate_position: bool = param(
        "logprob: divide P(A), P(B) by their mean over the run before deciding ('Calibrate Before "
        "Use', Zhao et al. 2021): removes a constant position prior; both orders must still agree."
    )
    min_choice_mass: float = param(
        "logprob: less probability than this on A+B is an invalid answer, never a verdict.", ge=0, le=1
    )


@dataclass(frozen=True, kw_only=True)  # optional fields sit beside their kin
class VerifyConfig:
    """params.yaml `verify`."""

    policy: LLMConfig = param(
        "The model sampled on-policy: the model `dpo` tunes, in the chat format `evaluate` answers with."
    )
    samples: int = param("Answers sampled per prompt (Tülu 3 samples several models; here the policy).", ge=2)
    min_instructions: int = param(
        "Fewest verifiable instructions appended to a training question.", ge=1, le=3
    )
    max_instructions: int = param("Most verifiable instructions appended to a training question.", ge=1, le=3)
    instruction_ids: tuple[str, ...] | None = param(
        "Instruction ids to draw for the training questions (keys of "
        "jalign/prompts/ifeval_constraints.yaml); absent or null: all of them.",
        default=None,
    )
    seed: int = param("Seed of the instructions drawn for each training question.", ge=0)
    max_prompts: int | None = param(
        "Use only the first N prompts (CPU profile); absent or null: all.", ge=1, default=None
    )
    include_instructions: bool = param(
        "Also sample the curated instructions that carry verifiable instructions (evolve's `verifiable` "
        "operation)."
    )
    min_distinct_4grams: float = param(
        "A chosen answer needs at least this share of distinct character 4-grams (a loop has few).",
        ge=0,
        le=1,
    )
    min_japanese_ratio: float = param(
        "A chosen answer needs at least this share of Japanese letters.", ge=0, le=1
    )
    license: str = param("Licence of the training questions (written for jalign: apache-2.0).")
    max_failure_rate: float = param(
        "Largest share of prompts that may be lost to failed LLM calls.", ge=0, le=1, inherit="limits"
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        if self.min_instructions > self.max_instructions:
            raise ValueError(
                f"min_instructions ({self.min_instructions}) > max_instructions ({self.max_instructions})"
            )
        unknown = sorted(set(self.instruction_ids or ()) - set(load_specs()))
        if unknown:
            raise ValueError(
                f"instruction_ids: {unknown} not in {SPECS_PATH.name}; known: {sorted(load_specs())}"
            )
        if self.policy.sampling.temperature == 0:
            raise ValueError(
                "policy.sampling.temperature is 0: greedy answers are all alike; sample (e.g. 0.8)"
            )


@dataclass(frozen=True)
class PreferencesConfig:
    """params.yaml `preferences`."""

    eval_size: int = param("Prompts held out for evaluation (Karasu: 234); capped at half the prompts.", ge=0)
    seed: int = param("Seed of the train / eval split.", ge=0)
    contamination_threshold: float = param(
        "Character ROUGE-L F1 above this between a pair's prompt and any evaluation prompt: dropped.",
        ge=0,
        le=1,
    )


@dataclass(frozen=True)
class EncoderConfig:
    """params.yaml `classifier.encoders.<name>`."""

    model: str = param(
        "Encoder: a local directory (models/base/multilingual-e5-small) or a Hub id BAAI/bge-m3@<rev>."
    )
    max_length: int = param("Tokens per text (prompt + answer), truncated beyond.", ge=8)
    learning_rate: float = param("AdamW learning rate.", gt=0)
    epochs: float = param("Training epochs.", gt=0)
    batch_size: int = param("Texts per training step.", ge=1)
    weight_decay: float = param("AdamW weight decay.", ge=0)
    warmup_ratio: float = param("Share of steps with linear warm-up.", ge=0, lt=1)
    seed: int = param("Training seed.", ge=0)


@dataclass(frozen=True)
class TrainerSettings:
    """The settings `sft` and `dpo` share: the base model, QLoRA / LoRA and the transformers Trainer's
    knobs. Each section holds them flat (`dpo.learning_rate`), beside its own keys."""

    model: str = param(
        "Base model (a local directory or a Hub id `org/name@<commit>`); with LoRA, DPO's reference "
        "model is the adapter-disabled base."
    )
    learning_rate: float = param("Peak learning rate (QLoRA used 1e-4 .. 2e-4; Karasu's DPO 5e-6).", gt=0)
    per_device_train_batch_size: int = param("Examples (DPO: pairs) per device per step.", ge=1)
    gradient_accumulation_steps: int = param("Steps accumulated per update.", ge=1)
    num_train_epochs: float = param("Epochs.", gt=0)
    max_steps: int = param("> 0 caps the run (CPU profile); -1 = use num_train_epochs.", ge=-1)
    lr_scheduler_type: str = param("A transformers scheduler name (e.g. cosine).")
    optim: str = param(
        "A transformers optimizer name (paged / 8-bit ones, e.g. paged_adamw_8bit, need CUDA; CPU: "
        "adamw_torch)."
    )
    seed: int = param("Training seed.", ge=0)
    dtype: Literal["bfloat16", "float16", "float32", "native"] = param(
        "Compute dtype; native: bfloat16 where the device runs it natively (CUDA, AVX512-BF16 / AMX CPUs), "
        "else float32."
    )
    quantization: Literal["nf4", "none"] = param(
        "nf4: QLoRA, 4-bit NF4 with double quantisation; none: LoRA on the full-precision base."
    )
    lora: LoraSettings = param("LoRA adapter settings.")
    max_length: int = param("Tokens per example (prompt + answer), truncated beyond.", ge=8)
    logging_steps: int = param("Log (DVCLive) every N steps.", ge=1)

    def __post_init__(self) -> None:
        if self.max_steps == 0:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or > 0")
        check_trainer_choices(self.optim, self.lr_scheduler_type)


@dataclass(frozen=True)
class SFTConfig(TrainerSettings):
    """params.yaml `sft`: the trainer settings plus `enabled`."""

    enabled: bool = param("Run SFT; when false the stage writes an empty output and says so in its metrics.")


@dataclass(frozen=True)
class DPOConfig(TrainerSettings):
    """params.yaml `dpo`: the trainer settings plus the preference loss. The embedded default is a CPU
    profile that finishes in minutes; the karasu preset holds the article's values (learning_rate 5e-6,
    batch 4, eval batch 2, seed 42, gradient accumulation 4, cosine, 1 epoch, bfloat16,
    paged_adamw_8bit)."""

    loss: Literal["sigmoid", "ipo", "kto"] = param(
        "sigmoid = DPO (Rafailov et al. 2023), ipo (Azar et al. 2023), kto (KTOTrainer on the unpaired set)."
    )
    beta: float = param(
        "Strength of the pull towards the reference. In Hugging Face's DPO / IPO / KTO comparison the best "
        "beta differs per method (0.01 .. 0.6); Zephyr did best at 0.01.",
        gt=0,
    )
    per_device_eval_batch_size: int = param("Pairs per device per eval step (Karasu: 2).", ge=1)
    warmup_ratio: float = param("Share of steps with warm-up.", ge=0, lt=1)
    precompute_ref_log_probs: bool = param("One reference pass up front instead of one per step.")
    gradient_checkpointing: bool = param("Trade compute for memory.")
    start_from_sft: bool = param("Continue from the sft stage's adapter instead of a fresh one.")
    max_train_samples: int | None = param(
        "Use the first N training rows; absent or null: all.", ge=1, default=None
    )
    max_eval_samples: int | None = param(
        "Use the first N eval rows; absent or null: all.", ge=1, default=None
    )


@dataclass(frozen=True)
class ModelEntry:
    """One model of `evaluate.baseline` / `evaluate.candidates`."""

    name: str = param("Label of this model in battles, metrics and reports.")
    llm: LLMConfig = param("The model (base + optional `adapter`) and its answer sampling.")
    system: str = param("System message for every question; absent or '': none.", default=None)

    def __post_init__(self) -> None:
        if self.system is None:
            object.__setattr__(self, "system", "")  # the same entry (and cache keys) as writing ''


@dataclass(frozen=True)
class EvaluateConfig:
    """params.yaml `evaluate`: what the `evaluate` stage answers and judges (what the judgments mean is
    `score`'s)."""

    sets: tuple[EvalSet, ...] = param("Evaluation sets (also the contamination checks' reference).")
    baseline: ModelEntry = param("The model every candidate is compared with; its score is 50.0.")
    candidates: tuple[ModelEntry, ...] = param("Models to score against the baseline.")
    judge: LLMConfig = param("The judge of pairwise games and single-answer grades.")
    method: Literal["text", "logprob"] = param(
        "text: an explanation and one of [[A>>B]] [[A>B]] [[A=B]] [[B>A]] [[B>>A]] (grades: [[n]]); "
        "logprob: P(A) vs P(B) (grades: P('1'..'5')) from next-token log-probs, for small local judges."
    )
    grade: bool = param("Also grade single answers (jalign / ELYZA 1-5, MT-Bench 1-10 per turn).")
    reask_invalid: bool = param(
        "Re-ask a failed or unparseable judgment once, with a new seed (llm-jp-judge)."
    )
    mt_bench_temperatures: bool = param("Answer MT-Bench with FastChat's per-category temperatures.")
    max_failure_rate: float = param(
        "Largest share of games and grades that may be lost to failed LLM calls.",
        ge=0,
        le=1,
        inherit="limits",
    )
    budget_usd: float | None = param("USD this stage may spend; null = no cap.", ge=0, inherit="limits")

    def __post_init__(self) -> None:
        names = [self.baseline.name, *(c.name for c in self.candidates)]
        if not self.candidates or len(set(names)) != len(names):
            raise ValueError(f"need at least one candidate and distinct names, got {names}")
        if self.grade and self.method == "logprob" and any(s.format == "mt_bench" for s in self.sets):
            raise ValueError(
                "grade with method logprob cannot read MT-Bench's 1-10 scale from one token: "
                "use method text, or grade: false"
            )


@dataclass(frozen=True)
class ScoreConfig:
    """params.yaml `score`: how the `score` stage reads the stored evaluation (no LLM call), so
    `-S score.invalid=tie` rescores without judging again."""

    invalid: Literal["loss", "tie", "drop"] = param(
        "What an invalid judgment (failed or unparseable after the re-ask) counts as, for the "
        "candidate: loss (default; never in its favour), tie, or drop. Counted and reported either way."
    )
    language_penalty: bool = param(
        "An answer that is not Japanese (below min_japanese_ratio) loses to one that is, "
        "whatever the judge said."
    )
    min_japanese_ratio: float = param("Share of Japanese characters an answer needs.", ge=0, le=1)
    strong_weight: int = param("Battle rows a strong verdict (A>>B) counts as (Arena-Hard v0.1: 3).", ge=1)
    bootstrap: int = param("Bootstrap rounds of the 95% CI (Arena-Hard uses 100; 1000 is steadier).", ge=1)
    seed: int = param("Bootstrap seed.", ge=0)
    style_control: bool = param("Also fit length and markdown features (Arena-Hard v2 style control).")
    tie_margin: float = param("logprob: |P(A) - P(B)| at most this is a tie.", ge=0, lt=1)
    calibrate_position: bool = param("logprob: divide out the set's mean P(A), P(B) before deciding.")
    min_choice_mass: float = param(
        "logprob: less probability than this on the choices is invalid.", ge=0, le=1
    )
    report_examples: int = param("Best / worst examples per candidate in eval_report.md.", ge=0)


@dataclass(frozen=True, kw_only=True)  # optional fields sit beside their kin
class HubConfig:
    """params.yaml `hub`."""

    push: bool = param(
        "Upload for real; false: the stage only writes the plan (metrics/hub.meta.json, figures in "
        "metrics/hub.json)."
    )
    namespace: str = param("Hub user or organisation that owns the repos.")
    private: bool = param("Create new repos private (an existing repo keeps its visibility).")
    endpoint: str | None = param(
        "Hub URL; absent or null: $HF_ENDPOINT, else https://huggingface.co.", default=None
    )
    instructions_repo: str = param("Dataset repo name for the curated instructions (split train).")
    preferences_repo: str = param(
        "Dataset repo name for the preference sets (configs pairwise / kto / binary)."
    )
    dpo_repo: str = param("Model repo name for the DPO adapter (PEFT files).")
    classifier_repo: str = param("Model repo name per classifier; {name} = the encoder's name.")
    classifiers: tuple[str, ...] = param(
        "classifier.encoders names whose models/classifier/<name> are published."
    )
    allowed_licenses: tuple[str, ...] = param(
        "Licence / model-terms ids (Hub ids, lower case) an artifact may hold; anything else is refused. "
        "An artifact's set is the union of its rows' license and model_terms (+ the base model's licence)."
    )
    override_licenses: tuple[str, ...] = param(
        "Ids accepted although not allowed, after reading their terms; the card records the override. "
        "The default profile's base is Gemma (terms id gemma). `unknown` is refused unless listed here."
    )
    base_model_licenses: dict[str, str] = param(
        "Base model reference -> licence id, for Hub bases (no jalign_model.json)."
    )
    eval_candidate: str = param(
        "The DPO model's name among the score stage's candidates (its card's eval results)."
    )

    def __post_init__(self) -> None:
        if not _HUB_NAME.match(self.namespace):
            raise ValueError(f"namespace: {self.namespace!r} is not a valid Hub user or organisation name")
        for name in ("instructions_repo", "preferences_repo", "dpo_repo"):
            if not _HUB_NAME.match(getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)!r} is not a valid Hub repo name")
        for encoder in self.classifiers:
            repo = self.classifier_repo.replace("{name}", encoder)
            if not _HUB_NAME.match(repo):
                raise ValueError(f"classifier_repo: {repo!r} (for {encoder!r}) is not a valid Hub repo name")
        if len(self.classifiers) > 1 and "{name}" not in self.classifier_repo:
            raise ValueError("classifier_repo: must contain {name} when several classifiers are published")
        models = [self.dpo_repo, *(self.classifier_repo.replace("{name}", c) for c in self.classifiers)]
        if len(set(models)) != len(models) or self.instructions_repo == self.preferences_repo:
            raise ValueError(
                "instructions_repo / preferences_repo / dpo_repo / classifier_repo: repo names collide"
            )
        if self.endpoint is not None:
            if not re.match(r"^https?://[^/\s]+", self.endpoint):
                raise ValueError(f"endpoint: {self.endpoint!r} is not an http(s) URL")
            if "@" in self.endpoint.split("/")[2]:
                raise ValueError(
                    "endpoint: credentials in the URL are not allowed; the token comes from HF_TOKEN"
                )
        for name in ("allowed_licenses", "override_licenses"):
            ids = getattr(self, name)
            if any(normalize_license(i) != i for i in ids):
                raise ValueError(f"{name}: use lower-case Hub licence ids, got {list(ids)}")
        if UNKNOWN in self.allowed_licenses:
            raise ValueError("allowed_licenses: 'unknown' is never allowed; accept it in override_licenses")

    def repo_id(self, name: str) -> str:
        return f"{self.namespace}/{name}"


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml `report`."""

    max_examples: int = param(
        "Examples shown per stage and outcome (kept / dropped, win / loss, pass / fail ...); the rest are "
        "counted, not shown. Bounds the page's size, which is committed to git.",
        ge=0,
    )
    max_chars: int = param(
        "Longer texts (prompts, answers, judge outputs) are cut to this many characters; the page says "
        "how many were cut.",
        ge=1,
    )
