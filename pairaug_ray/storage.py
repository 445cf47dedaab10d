"""Local paths and `s3://` URIs behind one small API.

File-level operations go through fsspec (s3fs for S3); Parquet goes through Ray Data, which uses
pyarrow's native S3 client. Both read the endpoint and credentials from the standard AWS
environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_REGION`, or an IRSA / workload-identity role), so the same URI works for every reader.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from pairaug_ray.errors import UserError


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def is_local(uri: str) -> bool:
    return not is_s3(uri)


def _strip_file_scheme(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def absolute(uri: str | Path) -> str:
    """Local paths become absolute (Ray workers and jobs may run in another directory)."""
    uri = str(uri)
    if is_s3(uri):
        return uri.rstrip("/") if uri.count("/") > 3 else uri
    return os.path.abspath(os.path.expanduser(_strip_file_scheme(uri)))


def join(base: str | Path, *parts: str) -> str:
    base = str(base)
    if is_s3(base):
        return posixpath.join(base.rstrip("/"), *parts) if parts else base
    return os.path.join(_strip_file_scheme(base), *parts)


def resolve(uri: str, root: str) -> str:
    """`uri` if it is absolute or a URI, else `uri` relative to the dataset `root`."""
    if is_s3(uri) or os.path.isabs(_strip_file_scheme(uri)):
        return _strip_file_scheme(uri)
    return join(root, uri)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(_strip_file_scheme(str(uri)))
    return fs, path


class StorageUnreachableError(UserError, OSError):
    """An object store could not be reached or refused access; the message names the URI."""


@contextmanager
def _reaching(uri: str):
    """Errors of reaching a remote store (no endpoint, no credentials, access denied) as one that
    names the URI; missing files stay FileNotFoundError."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, UnicodeDecodeError):
        raise
    except Exception as e:
        if is_local(uri) or not _is_connection_error(e):
            raise
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise StorageUnreachableError(
            f"cannot reach {uri}: {reason} (check AWS_ENDPOINT_URL, the credentials and the bucket)"
        ) from None


def _is_connection_error(e: BaseException) -> bool:
    """No endpoint, no credentials, a refused request: what reaching an object store raises."""
    if isinstance(e, OSError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return False
    return isinstance(e, BotoCoreError | ClientError)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    with _reaching(uri):
        return fs.exists(path)


def makedirs(uri: str) -> None:
    if is_local(uri):
        os.makedirs(absolute(uri), exist_ok=True)
    # S3 has no directories: a prefix exists once an object is written under it.


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with _reaching(uri), fs.open(path, "rb") as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object. Local writes go through a temporary file and a rename, so readers
    never see a half-written file; an S3 PUT is atomic already."""
    if is_local(uri):
        path = absolute(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    fs, path = filesystem(uri)
    with fs.open(path, "wb") as f:
        f.write(data)
    fs.invalidate_cache(posixpath.dirname(path))


def read_many(uris: list[str]) -> list[bytes | Exception]:
    """Many whole objects at once, in order: each one's bytes, or the exception reading it raised.

    On S3 the GETs run concurrently (fsspec's batched `cat`), so a batch of images costs about one
    round trip instead of one per image; local files are read one after another."""
    out: dict[str, bytes | Exception] = {}
    remote = list(dict.fromkeys(u for u in uris if not is_local(u)))
    for u in dict.fromkeys(u for u in uris if is_local(u)):
        try:
            out[u] = read_bytes(u)
        except Exception as e:  # the caller decides what a missing or unreadable file means
            out[u] = e
    if remote:  # one object store per batch (a batch may mix it with local files)
        fs, _ = filesystem(remote[0])
        paths = {u: filesystem(u)[1] for u in remote}
        with _reaching(remote[0]):
            got = fs.cat(list(paths.values()), on_error="return")
        out.update({u: got.get(p, FileNotFoundError(p)) for u, p in paths.items()})
    return [out[u] for u in uris]


def write_many(objects: dict[str, bytes]) -> None:
    """Write whole objects; on S3 the PUTs run concurrently (fsspec's batched `pipe`)."""
    remote = {u: data for u, data in objects.items() if not is_local(u)}
    for u, data in objects.items():
        if is_local(u):
            write_bytes(u, data)
    if remote:
        fs, _ = filesystem(next(iter(remote)))
        with _reaching(next(iter(remote))):
            fs.pipe({filesystem(u)[1]: data for u, data in remote.items()})
        for parent in {posixpath.dirname(filesystem(u)[1]) for u in remote}:
            fs.invalidate_cache(parent)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """`obj` as JSON that any reader accepts: NaN and infinities become null (json.dumps would write
    the NaN literal, which JavaScript and jq reject); numpy scalars become numbers; anything else
    unknown becomes its str()."""
    return json.dumps(_json_safe(obj), indent=2, allow_nan=False, default=str)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy scalar
        return _json_safe(obj.item())
    return obj


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json_text(obj))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """All files under `uri` (recursively) whose names end with `suffix`, as full URIs, sorted."""
    fs, path = filesystem(uri)
    if is_s3(uri):
        # s3fs caches listings per process; other processes (Ray workers, a killed run) write and
        # remove objects here, and a stale listing would hide them from resume and finalize.
        fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    found = fs.find(path)
    prefix = "s3://" if is_s3(uri) else ""
    return sorted(prefix + p for p in found if p.endswith(suffix))


def remove(uri: str, recursive: bool = True) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
        if is_s3(uri):
            fs.invalidate_cache()


def download_tree(uri: str, local_dir: str) -> None:
    """Copy every object under the `s3://` prefix `uri` into `local_dir`."""
    fs, path = filesystem(uri)
    files = fs.find(path)
    if not files:
        raise FileNotFoundError(f"nothing found under {uri}")
    for src in files:
        rel = posixpath.relpath(src, path)
        dst = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        fs.get(src, dst)


def upload_tree(local_dir: str, uri: str) -> None:
    """Copy a local folder to `uri` (an s3:// prefix or another local folder)."""
    for dirpath, _, filenames in os.walk(local_dir):
        for name in filenames:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
            with open(src, "rb") as f:
                write_bytes(join(uri, rel), f.read())
