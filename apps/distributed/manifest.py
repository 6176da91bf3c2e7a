"""The JSONL manifest of a distributed run, and what a re-run does with it.

The manifest (``bsrn-manifest.jsonl`` in the output folder) holds one JSON object a line per input:
``{"input": ..., "output": ..., "status": "done" | "skipped" | "failed", "reason": ..., "worker": ...}``.
``done``: this tool wrote the output; ``skipped``: the output already existed and was left alone;
``failed``: ``reason`` says why. ``worker`` is ``host:pid`` of the actor that handled it.

While a run goes, each result is appended as it arrives (a killed driver loses nothing it had been
told); at the end the file is rewritten atomically with one line per input in plan order. Reading
keeps the last line of each input and ignores lines that do not parse (a line torn by a kill). Neither
ever writes through a symbolic link: the log opens with ``O_NOFOLLOW``, the rewrite renames into place,
and a manifest that is a link is refused before the run (:func:`read_manifest`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal

from bsrn_edge.errors import InputError
from bsrn_edge.imageio import open_nofollow, write_atomic

from ..jobs import Job

__all__ = ["MANIFEST_NAME", "Entry", "read_manifest", "write_manifest", "ManifestLog", "resume"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "bsrn-manifest.jsonl"
Status = Literal["done", "skipped", "failed"]
_STATUSES = ("done", "skipped", "failed")
#: bsrn-upscale's outcome of one input (``apps.batch.attempt``) ↔ its manifest status
STATUS_OF_OUTCOME = {"written": "done", "skipped": "skipped", "failed": "failed"}
OUTCOME_OF_STATUS = {status: outcome for outcome, status in STATUS_OF_OUTCOME.items()}


@dataclass(frozen=True)
class Entry:
    """One input's line in the manifest."""

    input: str
    output: str
    status: Status
    reason: str | None = None
    worker: str | None = None

    @classmethod
    def for_job(cls, job: Job, status: Status, reason: str | None = None, worker: str | None = None) -> Entry:
        return cls(str(job.src), str(job.dst), status, reason, worker)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Entry:
        """Parse one line; ``ValueError`` when it is not a manifest entry."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("status") not in _STATUSES:
            raise ValueError(f"not a manifest entry: {line[:80]!r}")
        return cls(str(obj["input"]), str(obj["output"]), obj["status"], obj.get("reason"), obj.get("worker"))


def read_manifest(path: Path) -> dict[str, Entry]:
    """The latest entry of each input in ``path``; empty when there is no manifest yet. A manifest that is a
    symbolic link is refused (an InputError): this run would write through it, outside ``-o``."""
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link (to {os.readlink(path)}); bsrn-upscale writes its manifest "
                         "itself and never through a link. Remove the link, or choose another -o")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc.strerror}); fix its permissions or move it away") from exc
    entries: dict[str, Entry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = Entry.from_json(line)
        except (ValueError, KeyError) as exc:
            log.warning("%s line %d ignored (%s)", path, number, exc)
            continue
        entries[entry.input] = entry
    return entries


def write_manifest(path: Path, entries: Iterable[Entry]) -> None:
    """Replace the manifest atomically with ``entries``, one line each."""
    write_atomic(path, "".join(e.to_json() + "\n" for e in entries).encode("utf-8"))


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if not fh.tell():
            return b""
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


class ManifestLog:
    """Appends entries to the manifest as results arrive, each line flushed before the next result."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never through a link planted there
        torn = os.fstat(fd).st_size > 0 and _last_byte(path) not in (b"", b"\n")  # a driver killed mid-line
        self._fh = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if torn:
            self._fh.write("\n")

    def add(self, entry: Entry) -> None:
        self._fh.write(entry.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def resume(jobs: list[Job], previous: dict[str, Entry], force: bool) -> tuple[list[Job], list[Entry]]:
    """(jobs for the workers, entries settled without them) for a run over ``jobs``.

    Unless ``force``, a job whose output file exists is settled: ``done`` when the manifest says this
    tool wrote that output for that input, ``skipped`` otherwise. Every other job is sent, among them
    the ones that failed before (the file may have been fixed) and the ones whose output was deleted.
    """
    todo: list[Job] = []
    settled: list[Entry] = []
    for job in jobs:
        if force or job.refusal or not job.done():
            todo.append(job)
            continue
        before = previous.get(str(job.src))
        if before is not None and before.status == "done" and before.output == str(job.dst):
            settled.append(before)
        else:
            settled.append(Entry.for_job(job, "skipped"))
    return todo, settled
