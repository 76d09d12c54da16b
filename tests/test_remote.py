"""DVC remotes round-trip: push from one checkout, `git clone` + `dvc pull` in another, byte-identical
data and a clean `dvc status`. Once with the repository's own default remote (a local folder next to
the checkout), once with S3 on a moto server on 127.0.0.1 that checks request signatures, whose
credentials live in the environment or `.dvc/config.local` and never in a committed file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
REGION = "us-east-1"


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any AWS setting of the machine: credentials are only what a test
    passes, and botocore looks for no config file and no instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": REGION,
        **extra,
    }


def run(cwd: Path, *args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


def make_project(root: Path, env: dict[str, str]) -> Path:
    """A small DVC project: a `dvc add`-ed directory (text, Japanese JSONL, binary), a `dvc add`-ed file
    and a stage whose output is cached; committed, with the repo's own .dvc/config."""
    repo = root / "repo"
    (repo / "data" / "raw" / "nested").mkdir(parents=True)
    (repo / "data" / "raw" / "a.txt").write_text("first file\n", encoding="utf-8")
    rows = [{"id": i, "instruction": f"日本語の指示その{i}です。"} for i in range(20)]
    (repo / "data" / "raw" / "nested" / "b.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (repo / "data" / "raw" / "nested" / "blob.bin").write_bytes(os.urandom(70_000))
    (repo / "model.bin").write_bytes(os.urandom(5000))
    run(repo, *GIT, "init", "-q", env=env)
    run(repo, "dvc", "init", "-q", env=env)
    shutil.copy2(REPO / ".dvc" / "config", repo / ".dvc" / "config")  # the committed default remote
    run(repo, "dvc", "add", "-q", "data/raw", "model.bin", env=env)
    cmd = "cat data/raw/a.txt data/raw/nested/b.jsonl > data/joined.txt"
    run(
        repo,
        "dvc",
        "stage",
        "add",
        "-q",
        "-n",
        "join",
        "-d",
        "data/raw",
        "-o",
        "data/joined.txt",
        cmd,
        env=env,
    )
    run(repo, "dvc", "repro", "-q", env=env)
    run(repo, "git", "add", "-A", env=env)
    run(repo, *GIT, "commit", "-qm", "data", env=env)
    return repo


DATA = [
    "data/raw/a.txt",
    "data/raw/nested/b.jsonl",
    "data/raw/nested/blob.bin",
    "model.bin",
    "data/joined.txt",
]


def assert_same_data(origin: Path, clone: Path, env: dict[str, str]) -> None:
    for name in DATA:
        assert (clone / name).read_bytes() == (origin / name).read_bytes(), name
    assert json.loads(run(clone, "dvc", "status", "--json", env=env).stdout) == {}


def test_default_remote_round_trip(tmp_path: Path):
    env = clean_env(tmp_path)
    work = tmp_path / "work"
    origin = make_project(work, env)
    run(origin, "dvc", "push", env=env)
    # The committed url ../../jalign-remote is relative to .dvc/: it lands next to the checkout.
    remote = work / "jalign-remote"
    stored = [p for p in (remote / "files" / "md5").rglob("*") if p.is_file()]
    assert len(stored) == 6  # the directory's 3 files and its .dir manifest, model.bin, the stage output
    assert {p.read_bytes() for p in stored} >= {(origin / n).read_bytes() for n in DATA}

    run(work, "git", "clone", "-q", str(origin), "clone", env=env)
    clone = work / "clone"
    assert not (clone / "model.bin").exists() and not (clone / "data" / "raw").exists()
    run(clone, "dvc", "pull", env=env)
    assert_same_data(origin, clone, env)
    assert "in sync" in run(clone, "dvc", "status", "--cloud", env=env).stdout


@pytest.fixture
def moto_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 that verifies SigV4 signatures against IAM keys it issued."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # The first 3 requests (creating the IAM user, its policy and key) go unauthenticated; every later
    # request must be signed with a key the server issued. The setting is process-wide: restore it.
    previous = reset_auth(url, "3")
    try:
        yield url
    finally:
        reset_auth(url, previous)
        server.stop()


def reset_auth(url: str, count: str) -> str:
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]


def issue_key(url: str) -> tuple[str, str]:
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name=REGION, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")  # fmt: skip
    iam.create_user(UserName="ci")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_s3_round_trip_credentials_stay_out_of_the_repo(tmp_path: Path, moto_s3: str):
    import boto3

    key_id, secret = issue_key(moto_s3)
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name=REGION, aws_access_key_id=key_id,
                      aws_secret_access_key=secret)  # fmt: skip
    s3.create_bucket(Bucket="jalign-test")

    env = clean_env(tmp_path)
    work = tmp_path / "work"
    origin = make_project(work, env)
    # The team's switch, committed: the S3 remote becomes the default. Machine-specific settings (here the
    # endpoint of the local server) go to config.local, which git ignores.
    run(origin, "dvc", "remote", "add", "-d", "s3", "s3://jalign-test/store", env=env)
    run(origin, "dvc", "remote", "modify", "s3", "region", REGION, env=env)
    run(origin, "dvc", "remote", "modify", "--local", "s3", "endpointurl", moto_s3, env=env)
    run(origin, "git", "add", "-A", env=env)
    run(origin, *GIT, "commit", "-qm", "s3 remote", env=env)

    wrong = clean_env(tmp_path, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY="not-the-secret")
    refused = run(origin, "dvc", "push", env=wrong, ok=False)  # the server checks signatures
    assert refused.returncode != 0 and "403" in refused.stderr
    run(
        origin, "dvc", "push", env=clean_env(tmp_path, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    )
    stored = s3.list_objects_v2(Bucket="jalign-test", Prefix="store/files/md5/")["KeyCount"]
    assert stored == 6

    # A colleague: clone, keep the credentials in config.local (no AWS variable in the environment).
    run(work, "git", "clone", "-q", str(origin), "clone", env=env)
    clone = work / "clone"
    run(clone, "dvc", "remote", "modify", "--local", "s3", "endpointurl", moto_s3, env=env)
    refused = run(clone, "dvc", "pull", env=env, ok=False)
    assert refused.returncode != 0 and "Unable to locate credentials" in refused.stderr
    run(clone, "dvc", "remote", "modify", "--local", "s3", "access_key_id", key_id, env=env)
    run(clone, "dvc", "remote", "modify", "--local", "s3", "secret_access_key", secret, env=env)
    run(clone, "dvc", "pull", env=env)
    assert_same_data(origin, clone, env)

    # Credentials: in clone/.dvc/config.local only, which git ignores; in no other file of either checkout
    # (DVC's tmp and index included), in no commit, and not in the committed config.
    assert secret in (clone / ".dvc" / "config.local").read_text()
    for repo in (origin, clone):
        run(repo, "git", "check-ignore", "-q", ".dvc/config.local", env=env)
        assert not run(repo, "git", "status", "--porcelain", env=env).stdout.strip()
        history = run(repo, "git", "log", "--all", "-p", env=env).stdout
        assert "s3://jalign-test/store" in history and key_id not in history and secret not in history
        for path in repo.rglob("*"):
            if path.is_file() and path != clone / ".dvc" / "config.local" and ".git" not in path.parts:
                data = path.read_bytes()
                assert secret.encode() not in data and key_id.encode() not in data, path
