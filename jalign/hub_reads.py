"""Reading models and datasets from the Hugging Face Hub: one line naming what and the fix when the Hub
cannot serve them, instead of retries and a traceback.

Unreachable, `huggingface_hub` retries each file five times (1 + 2 + 4 + 8 + 8 s) and then raises a
chained ConnectionError; offline (HF_HUB_OFFLINE=1), a model or dataset missing from the local cache fails
deep inside transformers or datasets. So before downloading a repo the local Hub cache does not hold,
`from_hub` asks the endpoint once (seconds at most, no retries); a repo the cache holds is left to the
client, which may serve it from there. Either failure becomes a `HubUnavailable` line.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from jalign.errors import JalignError

PROBE_TIMEOUT_S = 5.0
_INSTEAD = "or name a local copy instead"


class HubUnavailable(JalignError, ConnectionError):
    """A Hub model or dataset that cannot be downloaded now and is not in the local cache."""


@contextlib.contextmanager
def from_hub(
    repo_id: str, what: str, repo_type: Literal["model", "dataset"] = "model", offline: bool | None = None
) -> Iterator[None]:
    """Around the download of Hub repo `repo_id` (`what` names it in errors, with its revision).

    `offline`: the loading library's offline switch (default huggingface_hub's HF_HUB_OFFLINE).
    """
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    if not offline and not _in_local_cache(repo_id, repo_type):
        reason = unreachable(constants.ENDPOINT)
        if reason is not None:
            raise HubUnavailable(
                f"{what}: cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({reason}): connect and "
                f"rerun, set HF_HUB_OFFLINE=1 to use the local Hugging Face cache, {_INSTEAD}"
            )
    try:
        yield
    except OSError as exc:  # transformers raises OSError, datasets ConnectionError, the client both
        if not _not_served(exc):
            raise
        raise _unavailable(what, offline, exc) from None


def load_dataset(dataset: str, config: str | None, split: str, revision: str | None) -> Any:
    """`datasets.load_dataset` of a Hub dataset, under `from_hub` (datasets keeps its own offline switch)."""
    import datasets

    what = f"{dataset}@{revision}" if revision else dataset
    with from_hub(dataset, what, "dataset", offline=datasets.config.HF_HUB_OFFLINE):
        return datasets.load_dataset(dataset, config, split=split, revision=revision)


def unreachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why `endpoint` cannot be reached, or None when it answers at all (any HTTP status will do)."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except OSError as exc:  # URLError (no such host, connection refused), a timeout
        return str(getattr(exc, "reason", None) or exc)
    return None


def _in_local_cache(repo_id: str, repo_type: str) -> bool:
    from huggingface_hub import constants

    folder = constants.REPO_ID_SEPARATOR.join([f"{repo_type}s", *repo_id.split("/")])
    return (Path(constants.HF_HUB_CACHE) / folder).is_dir()


def _not_served(exc: BaseException) -> bool:
    """The error, or one it came from, says the files could neither be fetched nor found locally."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, LocalEntryNotFoundError | ConnectionError):  # OfflineModeIsEnabled included
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unavailable(what: str, offline: bool, exc: OSError) -> HubUnavailable:
    if offline:
        return HubUnavailable(
            f"{what}: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it: "
            f"download it once online (HF_HUB_OFFLINE unset), {_INSTEAD}"
        )
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HubUnavailable(f"{what}: the Hugging Face Hub did not serve it ({cause}): rerun later, {_INSTEAD}")
