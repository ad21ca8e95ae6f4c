"""Checkpoints on the Hugging Face Hub: `hf://OWNER/NAME[@REVISION][/SUBDIR]`.

The published HRM checkpoints (`sapientinc/HRM-checkpoint-ARC-2`, `-sudoku-extreme`,
`-maze-30x30-hard`) and TRM's live there. `huggingface_hub.snapshot_download` fetches one into
its cache, once, and serves it from there afterwards; it honours `HF_HOME` (where the cache
is) and `HF_HUB_OFFLINE=1` (the cache only, no network). Nothing else in hrm-mlir downloads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hrm_mlir.core.errors import CheckpointError

PREFIX = "hf://"
_ID = re.compile(r"^hf://([\w.-]+/[\w.-]+)(?:@([\w./-]+?))?(?:/(.+))?$")


def is_hub_id(path: object) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


@dataclass(frozen=True)
class HubSource:
    """Where a checkpoint came from: the id as given, and the commit the cache holds."""

    given: str
    repo_id: str
    revision: str | None  # as asked for (None: main)
    commit: str  # the snapshot's commit hash
    path: Path  # the local directory

    def describe(self) -> str:
        return f"hf://{self.repo_id} at revision {self.commit}"


def parse(given: str) -> tuple[str, str | None, str | None]:
    """(repo id, revision or None, subdirectory or None) of `hf://OWNER/NAME[@REV][/SUBDIR]`."""
    m = _ID.match(given)
    if m is None:
        raise CheckpointError(
            f"{given}: not a Hub id; expected hf://OWNER/NAME[@REVISION][/SUBDIR]"
        )
    return m.group(1), m.group(2), m.group(3)


def fetch(given: str) -> HubSource:
    """The local snapshot of a Hub checkpoint, downloaded into the cache if it is not there."""
    repo_id, revision, subdir = parse(given)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # a dependency; only a broken install lacks it
        raise CheckpointError(f"{given}: huggingface_hub is not installed") from None
    try:
        local = Path(snapshot_download(repo_id, revision=revision))
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{given}: no such model on the Hugging Face Hub (or private: `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{given}: the Hub repository has no revision {revision}") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{given}: not in the Hugging Face cache, and the Hub cannot be reached "
            "(HF_HUB_OFFLINE is set, or there is no network)"
        ) from None
    except HfHubHTTPError as e:
        raise CheckpointError(f"{given}: the Hub answered {str(e).splitlines()[0]}") from None
    path = local / subdir if subdir else local
    if not path.exists():
        raise CheckpointError(f"{given}: the snapshot has no {subdir}")
    return HubSource(given, repo_id, revision, local.name, path)
