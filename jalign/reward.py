"""Preference classifiers as reward models (GENIAC): a sequence classifier trained on single texts,
label 1 = contains the chosen answer, 0 = the rejected one; its logit margin is the reward.

`classifier_text` is the one place that turns (prompt, answer) into the classifier's input: the
preferences stage writes training texts with it and `judge.method: reward` scores with it.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from jalign.models import pick_device, resolve


def classifier_text(prompt: str, answer: str) -> str:
    return f"### 指示\n{prompt}\n\n### 回答\n{answer}"


class RewardModel:
    def __init__(self, ref: str, device: str = "auto", batch_size: int = 16, max_length: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = resolve(ref)
        kwargs = source.pretrained_kwargs()
        self.device = pick_device(device)
        with source.downloading():
            self.tokenizer = AutoTokenizer.from_pretrained(**kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(**kwargs)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def score(self, texts: list[str]) -> list[float]:
        """logit(chosen) - logit(rejected) for two-label heads; the single logit for one-label heads."""
        import torch

        rewards: list[float] = []
        for start in tqdm(range(0, len(texts), self.batch_size), desc="reward", unit="batch"):
            batch = texts[start : start + self.batch_size]
            enc = self.tokenizer(
                batch, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
            with torch.inference_mode():
                logits = self.model(**enc.to(self.device)).logits.float()
            margin = logits[:, 1] - logits[:, 0] if logits.shape[-1] == 2 else logits[:, 0]
            rewards += margin.tolist()
        return rewards
