"""Model references: a local folder, an `s3://` prefix, or a Hugging Face hub id.

`resolve_model` turns a reference into something `from_pretrained` accepts:
- a local folder is used in place;
- an `s3://` prefix is downloaded once per node into a local cache (a completed download is marked
  with a sentinel file and reused; concurrent workers on a node download into private temporary
  folders and the first to finish wins the atomic rename);
- `org/name` (optionally `org/name@revision`) is passed to the hub, which only works with network
  access; with HF_HUB_OFFLINE=1 it must already be in the hub cache.
A reference that is none of these fails here with a message saying what was looked for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pairaug_ray import storage
from pairaug_ray.errors import UserError

DONE_MARKER = ".pairaug-complete"
DEFAULT_CACHE_DIR = "~/.cache/pairaug/models"  # models.cache_dir's default
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


class ModelNotFoundError(UserError, FileNotFoundError):
    """A model reference names no usable model; the message says where it looked."""


@dataclass(frozen=True)
class ResolvedModel:
    ref: str  # what the config said
    path: str  # what to pass to from_pretrained: a local folder or a hub id
    revision: str | None = None  # hub revision, when the reference pinned one
    source: str = "local"  # local | s3 | hub


def is_hub_id(ref: str) -> bool:
    """`org/name` or `org/name@revision`, not a path (which a local folder of that name would be)."""
    looks_local = ref.startswith((".", "/", "~", "file://")) or ref.count("/") != 1
    return not looks_local and bool(_HUB_ID.match(ref))


def resolve_model(ref: str, cache_dir: str = DEFAULT_CACHE_DIR) -> ResolvedModel:
    if not ref or not ref.strip():
        raise ModelNotFoundError("empty model reference")
    ref = ref.strip()
    if storage.is_s3(ref):
        return ResolvedModel(ref, fetch_s3_model(ref, cache_dir), source="s3")
    local = Path(os.path.expanduser(ref.removeprefix("file://")))
    if local.is_dir():
        return ResolvedModel(ref, str(local.resolve()))
    if local.exists():
        raise ModelNotFoundError(
            f"model {ref!r} is a file; a model reference must be a folder saved by save_pretrained"
        )
    if is_hub_id(ref):
        name, _, revision = ref.partition("@")
        return ResolvedModel(ref, name, revision or None, source="hub")
    raise ModelNotFoundError(
        f"model {ref!r} not found: no such local folder ({local.resolve()}), and it is neither an s3:// prefix "
        "nor a hub id of the form org/name[@revision]"
    )


def fetch_s3_model(uri: str, cache_dir: str) -> str:
    """Download the model under `uri` once per node; later calls return the cached folder."""
    cache = Path(os.path.expanduser(cache_dir))
    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    target = cache / f"{uri.rstrip('/').rsplit('/', 1)[-1]}-{key}"
    if (target / DONE_MARKER).exists():
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache))
    try:
        storage.download_tree(uri, str(tmp))
    except FileNotFoundError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelNotFoundError(f"model {uri!r} not found: no objects under that S3 prefix") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / DONE_MARKER).write_text(uri)
    try:
        os.rename(tmp, target)
    except OSError:
        # Another worker on this node finished first; use its copy.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / DONE_MARKER).exists():
            raise
    return str(target)
