"""`jalign fetch`: a preset's external files from a pinned Hub commit or commit URL into
data/eval/external/, through the real `huggingface_hub` client and urllib against tests/fake_hub.py (a
Hub-compatible HTTP server on 127.0.0.1); the default profile fetches nothing and stays offline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fake_hub  # tests/ is on sys.path (conftest.py)
import pytest
import yaml
from click.testing import CliRunner

from commands import main as cli
from jalign.config import ConfigError, from_dict, read_params
from jalign.fetch import FETCH_DIR, FetchConfig, FetchError, FetchFile, fetch_all, fetch_file

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")  # httpx2, in the client
TOKEN = f"hf_test_{uuid.uuid4().hex}"
USER = "alice"
REPO_ID = f"{USER}/ja-evals"
REPO = Path(__file__).resolve().parents[2]
OLD = b'{"question_id": 1, "turns": ["first version"]}\n'
NEW = b'{"question_id": 1, "turns": ["second version"]}\n'


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The fake Hub holding a dataset repo with two commits of question.jsonl (OLD, then NEW); the
    client's offline switch (set for the whole suite) lifted, its cache in tmp_path."""
    import huggingface_hub.constants as constants
    from huggingface_hub import HfApi

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with fake_hub.FakeHubServer({TOKEN: USER}) as server:
        api = HfApi(endpoint=server.url, token=TOKEN)
        api.create_repo(REPO_ID, repo_type="dataset")
        for data in (OLD, NEW):
            api.upload_file(path_or_fileobj=data, path_in_repo="ja/question.jsonl", repo_id=REPO_ID,
                            repo_type="dataset")  # fmt: skip
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def commits(server: fake_hub.FakeHubServer) -> list[str]:
    """The repo's commits after its initial one, oldest first."""
    return [c.sha for c in server.repo("dataset", REPO_ID).commits[1:]]


def hub_entry(revision: str, file: str = "ja/question.jsonl", **extra: str) -> FetchFile:
    return FetchFile(out=f"{FETCH_DIR}/arena/question.jsonl", hub=REPO_ID, repo_type="dataset",
                     revision=revision, file=file, **extra)  # fmt: skip


def test_a_hub_file_is_read_at_its_pinned_commit_not_at_main(hub, tmp_path):
    old, new = commits(hub)
    row = fetch_file(hub_entry(old), tmp_path)
    assert (tmp_path / FETCH_DIR / "arena/question.jsonl").read_bytes() == OLD  # main holds NEW
    assert row == {"out": f"{FETCH_DIR}/arena/question.jsonl", "bytes": len(OLD),
                   "source": f"hf://datasets/{REPO_ID}@{old}/ja/question.jsonl",
                   "sha256": hashlib.sha256(OLD).hexdigest()}  # fmt: skip
    fetch_file(hub_entry(new), tmp_path)
    assert (tmp_path / FETCH_DIR / "arena/question.jsonl").read_bytes() == NEW
    assert hub.calls("GET", f"/resolve/{old}/ja/question.jsonl")  # asked for that commit, by id


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (lambda old: hub_entry(old, file="ja/missing.jsonl"),
         "ja/missing.jsonl is not in alice/ja-evals@{old} (dataset): check fetch.files' file and revision"),
        (lambda old: hub_entry("0" * 40), f"alice/ja-evals@{'0' * 40} (dataset): no such revision"),
        (lambda old: hub_entry(old, sha256="0" * 64),
         "its SHA-256 is " + hashlib.sha256(OLD).hexdigest() + f", not the pinned {'0' * 64}"),
    ],
)  # fmt: skip
def test_a_missing_file_revision_or_wrong_bytes_is_one_error_and_writes_nothing(
    hub, tmp_path, entry, message
):
    old = commits(hub)[0]
    with pytest.raises(FetchError) as caught:
        fetch_file(entry(old), tmp_path)
    assert message.format(old=old) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / FETCH_DIR / "arena/question.jsonl").exists()
    assert not list((tmp_path / FETCH_DIR / "arena").glob(".*.tmp"))  # no temp file left behind


def test_offline_a_hub_file_not_in_the_cache_is_one_error_naming_the_fix(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FetchError, match=r"cannot download it .*connect \(HF_HUB_OFFLINE unset\)"):
        fetch_file(hub_entry(commits(hub)[0]), tmp_path)


def test_a_commit_url_is_checked_against_its_sha256(hub, tmp_path):
    old = commits(hub)[0]
    url = f"{hub.url}/datasets/{REPO_ID}/resolve/{old}/ja/question.jsonl"  # plain HTTP, commit in the path
    entry = FetchFile(out=f"{FETCH_DIR}/q.jsonl", url=url, sha256=hashlib.sha256(OLD).hexdigest())
    assert fetch_file(entry, tmp_path)["source"] == url
    assert (tmp_path / FETCH_DIR / "q.jsonl").read_bytes() == OLD
    with pytest.raises(FetchError, match=r"its SHA-256 is .*, not the pinned 1111"):
        fetch_file(FetchFile(out=f"{FETCH_DIR}/q.jsonl", url=url, sha256="1" * 64), tmp_path)
    with pytest.raises(FetchError, match=r"HTTP 404 .*check fetch.files' url"):
        fetch_file(FetchFile(out=f"{FETCH_DIR}/q.jsonl", url=url.replace("question", "nothing"),
                             sha256="1" * 64), tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"out": "data/other/q.jsonl", "url": "https://x/o/r/" + "a" * 40 + "/q", "sha256": "b" * 64},
         "files[0]: out: 'data/other/q.jsonl' must be a relative path inside data/eval/external/"),
        ({"out": f"{FETCH_DIR}/../q.jsonl", "url": "https://x/o/r/" + "a" * 40 + "/q", "sha256": "b" * 64},
         "must be a relative path inside"),
        ({"out": f"{FETCH_DIR}/manifest.json", "url": "https://x/o/r/" + "a" * 40 + "/q", "sha256": "b" * 64},
         "manifest.json is the stage's own manifest"),
        ({"out": f"{FETCH_DIR}/q.jsonl", "hub": "org/name", "repo_type": "dataset", "revision": "main",
          "file": "q.jsonl"}, "revision: 'main' is not a commit; pin org/name to its 40-hex commit id"),
        ({"out": f"{FETCH_DIR}/q.jsonl", "hub": "org/name", "revision": "a" * 40, "file": "q.jsonl"},
         "a hub file needs repo_type and file"),
        ({"out": f"{FETCH_DIR}/q.jsonl", "url": "https://x/o/r/main/q", "sha256": "b" * 64},
         "names no commit (40 hex) in its path; pin it to one"),
        ({"out": f"{FETCH_DIR}/q.jsonl", "url": "https://x/o/r/" + "a" * 40 + "/q"}, "a url file needs sha256"),
        ({"out": f"{FETCH_DIR}/q.jsonl", "url": "https://x/o/r/" + "a" * 40 + "/q", "sha256": "B" * 64},
         "sha256: 'BBBB"),
        ({"out": f"{FETCH_DIR}/q.jsonl"}, "set exactly one of hub (with revision, file) or url (with sha256)"),
    ],
)  # fmt: skip
def test_an_unpinned_or_misplaced_entry_is_refused_naming_the_field(entry, message):
    with pytest.raises(ConfigError) as caught:
        from_dict(FetchConfig, {"files": [entry]}, "fetch")
    assert message in str(caught.value)


def test_a_file_fetched_twice_is_refused():
    entry = {"out": f"{FETCH_DIR}/q.jsonl", "url": "https://x/o/r/" + "a" * 40 + "/q", "sha256": "b" * 64}
    with pytest.raises(ConfigError, match=r"files: data/eval/external/q\.jsonl is fetched twice"):
        from_dict(FetchConfig, {"files": [entry, entry]}, "fetch")


def test_fetch_all_writes_only_its_own_folder(tmp_path):
    assert fetch_all(FetchConfig(files=()), tmp_path) == []
    assert (tmp_path / FETCH_DIR).is_dir() and not list((tmp_path / FETCH_DIR).iterdir())
    with pytest.raises(FetchError, match="the fetch stage writes data/eval/external"):
        fetch_all(FetchConfig(files=()), tmp_path, "data/elsewhere")


REPO_ROOT = Path(__file__).resolve().parents[2]


def write_params(root: Path, files: list[dict]) -> None:
    """The repository's params (every stage checks the whole file) with these files to fetch."""
    params = read_params(REPO_ROOT / "params.yaml")
    params["fetch"] = {"files": files}
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


def test_the_stage_fetches_each_file_and_writes_its_manifest(hub, tmp_path, monkeypatch):
    old = commits(hub)[0]
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, [{"out": f"{FETCH_DIR}/ja/q.jsonl", "hub": REPO_ID, "repo_type": "dataset",
                             "revision": old, "file": "ja/question.jsonl"}])  # fmt: skip
    result = CliRunner().invoke(cli, ["fetch", "--out", FETCH_DIR])
    assert result.exit_code == 0, result.output
    assert (tmp_path / FETCH_DIR / "ja/q.jsonl").read_bytes() == OLD
    manifest = json.loads((tmp_path / FETCH_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert [row["source"] for row in manifest["files"]] == [
        f"hf://datasets/{REPO_ID}@{old}/ja/question.jsonl"
    ]


def test_a_stage_failure_is_one_line(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, [{"out": f"{FETCH_DIR}/q.jsonl", "hub": REPO_ID, "repo_type": "dataset",
                             "revision": commits(hub)[0], "file": "nope.jsonl"}])  # fmt: skip
    result = CliRunner().invoke(cli, ["fetch", "--out", FETCH_DIR])
    assert result.exit_code == 1 and "error: nope.jsonl is not in alice/ja-evals@" in result.output
    assert "Traceback" not in result.output


def test_the_default_profile_fetches_nothing_offline(tmp_path):
    """The repository's own params (the CPU profile): no file to fetch, so no network at all (an endpoint
    that refuses every connection, offline switches on) and no huggingface_hub import; only the manifest."""
    (tmp_path / "params.yaml").write_text(
        (REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    probe = (
        "import sys\nfrom commands import main\ntry:\n    main(['fetch', '--out', 'data/eval/external'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('HUB' if 'huggingface_hub' in sys.modules else 'NO-HUB')"
    )
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "NO-HUB", out.stdout + out.stderr
    assert sorted(p.name for p in (tmp_path / FETCH_DIR).iterdir()) == ["manifest.json"]
    assert json.loads((tmp_path / FETCH_DIR / "manifest.json").read_text(encoding="utf-8")) == {"files": []}
