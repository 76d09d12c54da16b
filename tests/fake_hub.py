"""A real Hugging Face Hub-compatible HTTP server on 127.0.0.1 for tests: in-memory repos with history.

Not a mock: the code under test talks HTTP to it through the real `huggingface_hub` client (point it here
with `HfApi(endpoint=server.url)` or `HF_ENDPOINT`). It implements what `huggingface_hub` 2.4 calls to
create a repo, commit files and read them back:

* `POST /api/repos/create` (409 with the repo url when it exists), `GET /api/whoami-v2`,
  `POST /api/validate-yaml` (parses the README front matter);
* `GET /api/{type}s/{ns}/{name}[/revision/{rev}]` (repo info: sha, private, siblings),
  `GET .../tree/{rev}[/{path}]`, `GET .../commits/{rev}`;
* `POST .../preupload/{rev}`: upload mode per file (`lfs` for binary / LFS-pattern / large files, else
  `regular`) and the remote oid (git blob sha1, or sha256 for LFS files) so the client skips unchanged files;
* `POST /[datasets/]{ns}/{name}.git/info/lfs/objects/batch` (git-lfs batch API, basic transfer: no
  actions for objects already stored), `PUT /lfs-upload/...` (checks the sha256), `POST /lfs-verify/...`;
* `POST .../commit/{rev}`: the NDJSON body (header, `file` lines with base64 content, `lfsFile`
  lines naming uploaded objects, `deletedFile` / `deletedFolder`), `parentCommit` checked;
* `HEAD` / `GET /[datasets/]{ns}/{name}/resolve/{rev}/{path}` with `X-Repo-Commit` and `ETag`.

Xet is never advertised. Writes need `Authorization: Bearer <token>` with a token in `tokens` (token ->
user name) and a namespace the user owns; private repos need it for reads too. Every request is
recorded (method, path, lower-cased headers, raw body); `fail(request)` may return `(status, message)`
to inject a fault before the request is served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".pt", ".pth", ".arrow", ".gguf", ".zst", ".npy")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)

_API = re.compile(
    r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(revision|preupload|commit|tree|commits)/([^/]+)(/.*)?)?$"
)
_LFS_BATCH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
_LFS_PUT = re.compile(r"^/lfs-upload/(model|dataset|space)/([^/]+)/([^/]+)/([0-9a-f]{64})$")
_LFS_VERIFY = re.compile(r"^/lfs-verify/(model|dataset|space)/([^/]+)/([^/]+)$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """What preupload reports, and what the client compares with its local file."""
        return self.sha256 if self.lfs else git_blob_sha1(self.data)

    @property
    def git_oid(self) -> str:
        return git_blob_sha1(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)


@dataclass(frozen=True)
class Commit:
    sha: str
    title: str
    message: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str  # model | dataset | space
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> uploaded object

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def at(self, revision: str) -> Commit | None:
        if revision == "main":
            return self.head
        return next((c for c in self.commits if c.sha == revision), None)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    raw: bytes


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeHubServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_HEAD = do_POST = do_PUT = do_GET


class FakeHubServer:
    def __init__(
        self,
        tokens: dict[str, str],
        *,
        orgs: dict[str, tuple[str, ...]] | None = None,
        fail: Callable[[Request], tuple[int, str] | None] | None = None,
    ) -> None:
        self.tokens = dict(tokens)  # token -> user name
        self.orgs = orgs or {}  # user -> organisations they may write to
        self.fail = fail
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self._lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> FakeHubServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "use FakeHubServer as a context manager"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- queries for tests --------------------------------------------------------------------------
    def repo(self, repo_type: str, repo_id: str) -> Repo:
        with self._lock:
            return self.repos[(repo_type, repo_id)]

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # -- request handling ---------------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        raw = _read_body(h)
        parts = urlsplit(h.path)
        request = Request(
            h.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in h.headers.items()}, raw
        )
        with self._lock:
            self.requests.append(request)
        try:
            fault = self.fail(request) if self.fail is not None else None
            if fault is not None:
                raise HubError(*fault)
            status, payload, headers = self._route(request)
        except HubError as err:
            status, headers = err.status, {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            payload = {"error": err.message}
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header(
                "Content-Type",
                "application/octet-stream" if isinstance(payload, bytes) else "application/json",
            )
            h.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, r: Request) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            if r.method == "POST" and r.path == "/api/repos/create":
                return self._create(r)
            if r.method == "POST" and r.path == "/api/validate-yaml":
                return self._validate_yaml(r)
            if r.method == "GET" and r.path == "/api/whoami-v2":
                return 200, {"type": "user", "name": self._user(r, required=True)}, {}
            if m := _API.match(r.path):
                kind, ns, name, action, rev, rest = m.groups()
                repo = self._get_repo(r, kind[:-1], f"{unquote(ns)}/{unquote(name)}", write=r.method != "GET")
                rev = unquote(rev or "main")
                return self._api(r, repo, action, rev, unquote(rest or "").lstrip("/"))
            if r.method == "POST" and (m := _LFS_BATCH.match(r.path)):
                kind, ns, name = m.groups()
                return self._lfs_batch(
                    r, self._get_repo(r, (kind or "models")[:-1], f"{ns}/{name}", write=True)
                )
            if r.method == "PUT" and (m := _LFS_PUT.match(r.path)):
                kind, ns, name, oid = m.groups()
                repo = self.repos.get((kind, f"{ns}/{name}"))
                if repo is None:
                    raise HubError(404, "Repository not found", "RepoNotFound")
                if hashlib.sha256(r.raw).hexdigest() != oid:
                    raise HubError(400, "uploaded content does not match its sha256")
                repo.lfs[oid] = r.raw
                return 200, {}, {}
            if r.method == "POST" and (m := _LFS_VERIFY.match(r.path)):
                kind, ns, name = m.groups()
                repo = self._get_repo(r, kind, f"{ns}/{name}", write=True)
                body = json.loads(r.raw)
                if body["oid"] not in repo.lfs or len(repo.lfs[body["oid"]]) != body["size"]:
                    raise HubError(404, f"LFS object {body['oid']} not found")
                return 200, {}, {}
            if r.method in ("GET", "HEAD") and (m := _RESOLVE.match(r.path)):
                kind, ns, name, rev, path = m.groups()
                repo = self._get_repo(r, (kind or "models")[:-1], f"{ns}/{name}", write=False)
                return self._resolve(repo, unquote(rev), unquote(path))
        raise HubError(404, f"no route {r.method} {r.path}")

    # -- auth and repos -----------------------------------------------------------------------------
    def _user(self, r: Request, required: bool) -> str | None:
        auth = r.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is None:
            if required:
                raise HubError(401, "Invalid credentials in Authorization header")
            return None
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _check_namespace(self, user: str, namespace: str) -> None:
        if namespace != user and namespace not in self.orgs.get(user, ()):
            raise HubError(403, f"You don't have the rights to write to {namespace}")

    def _get_repo(self, r: Request, repo_type: str, repo_id: str, write: bool) -> Repo:
        user = self._user(r, required=write)
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        if write:
            assert user is not None
            self._check_namespace(user, repo_id.split("/")[0])
        return repo

    def _create(self, r: Request) -> tuple[int, Any, dict[str, str]]:
        user = self._user(r, required=True)
        assert user is not None
        body = json.loads(r.raw)
        namespace = body.get("organization") or user
        self._check_namespace(user, namespace)
        repo_type = body.get("type") or "model"
        repo_id = f"{namespace}/{body['name']}"
        url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return 409, {"error": "You already created this repo", "url": url}, {}
        repo = Repo(repo_type, repo_id, private=body.get("visibility", "public") != "public")
        files = {".gitattributes": Blob(GITATTRIBUTES, lfs=False)}
        repo.commits.append(
            Commit(_commit_sha(repo_id, None, files, "initial commit"), "initial commit", "", files)
        )
        self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}, {}

    def _validate_yaml(self, r: Request) -> tuple[int, Any, dict[str, str]]:
        content = json.loads(r.raw)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        if match is None:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}, {}
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}, {}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    # -- repo API -----------------------------------------------------------------------------------
    def _api(
        self, r: Request, repo: Repo, action: str | None, rev: str, rest: str
    ) -> tuple[int, Any, dict[str, str]]:
        commit = repo.at(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if action in (None, "revision") and r.method == "GET":
            return 200, self._info(repo, commit), {}
        if action == "tree" and r.method == "GET":
            recursive = r.query.get("recursive", ["False"])[0].lower() == "true"
            return 200, _tree(commit.files, rest, recursive), {}
        if action == "commits" and r.method == "GET":
            items = [{"id": c.sha, "title": c.title, "message": c.message, "authors": [{"user": "jalign-test"}],
                      "date": "2025-01-01T00:00:00.000Z"} for c in reversed(repo.commits)]  # fmt: skip
            return 200, items, {}
        if action == "preupload" and r.method == "POST":
            files = []
            for f in json.loads(r.raw)["files"]:
                sample = base64.b64decode(f["sample"])
                lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or f["size"] >= LFS_MIN_SIZE
                remote = commit.files.get(f["path"])
                files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                              "oid": remote.oid if remote is not None and remote.lfs == lfs else None})  # fmt: skip
            return 200, {"files": files, "commitOid": commit.sha}, {}
        if action == "commit" and r.method == "POST":
            return self._commit(repo, rev, r.raw)
        raise HubError(404, f"no route {r.method} {r.path}")

    def _info(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        return {
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "tags": [],
            "siblings": [{"rfilename": p, "size": len(b.data)} for p, b in sorted(commit.files.items())],
        }

    def _commit(self, repo: Repo, rev: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if rev != "main":
            raise HubError(400, "commits go to main in this fake")
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.head.sha:
            raise HubError(412, f"parentCommit {parent} is not the head of main ({repo.head.sha})")
        files = dict(repo.head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"{path}: unsupported encoding {value.get('encoding')}")
                files[path] = Blob(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = repo.lfs.get(value["oid"])
                if data is None or len(data) != value["size"]:
                    raise HubError(400, f"{path}: LFS object {value['oid']} was not uploaded")
                files[path] = Blob(data, lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: b for p, b in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                raise HubError(400, f"unsupported NDJSON key {key}")
        sha = _commit_sha(repo.repo_id, repo.head.sha, files, header["summary"])
        repo.commits.append(Commit(sha, header["summary"], header.get("description", ""), files))
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        url = f"{self.url}/{prefix}{repo.repo_id}/commit/{sha}"
        return 200, {"success": True, "commitOid": sha, "commitUrl": url}, {}

    def _lfs_batch(self, r: Request, repo: Repo) -> tuple[int, Any, dict[str, str]]:
        body = json.loads(r.raw)
        if body.get("operation") != "upload":
            raise HubError(400, "only uploads are supported")
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs:  # no actions: the object is already stored
                base = f"{self.url}/lfs-upload/{repo.repo_type}/{repo.repo_id}/{obj['oid']}"
                verify = f"{self.url}/lfs-verify/{repo.repo_type}/{repo.repo_id}"
                entry["actions"] = {"upload": {"href": base}, "verify": {"href": verify}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _resolve(self, repo: Repo, rev: str, path: str) -> tuple[int, Any, dict[str, str]]:
        commit = repo.at(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        etag = blob.sha256 if blob.lfs else blob.git_oid
        return 200, blob.data, {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"'}


def _commit_sha(repo_id: str, parent: str | None, files: dict[str, Blob], summary: str) -> str:
    tree = {p: b.git_oid for p, b in sorted(files.items())}
    payload = json.dumps([repo_id, parent, tree, summary]).encode()
    return hashlib.sha1(payload).hexdigest()


def _tree(files: dict[str, Blob], folder: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{folder.rstrip('/')}/" if folder else ""
    entries: dict[str, dict[str, Any]] = {}
    for path, blob in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :].split("/")
        for depth in range(1, len(rest)):  # the folders on the way
            sub = prefix + "/".join(rest[:depth])
            if recursive or depth == 1:
                entries.setdefault(
                    sub,
                    {
                        "type": "directory",
                        "path": sub,
                        "oid": hashlib.sha1(sub.encode()).hexdigest(),
                        "size": 0,
                    },
                )
        if recursive or len(rest) == 1:
            entry: dict[str, Any] = {
                "type": "file",
                "path": path,
                "size": len(blob.data),
                "oid": blob.git_oid,
            }
            if blob.lfs:
                pointer = lfs_pointer(blob.sha256, len(blob.data))
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(pointer)}
            entries[path] = entry
    return list(entries.values())


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(h.rfile.read(size))
            h.rfile.readline()  # CRLF after each chunk
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""
