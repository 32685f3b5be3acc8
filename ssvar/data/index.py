"""The dataset index: a list of (relative path, label, group) records plus class names.

Every reader in :mod:`ssvar.data.lists` returns a :class:`VideoIndex`; datasets read one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class SplitError(ValueError):
    """A split or list file is malformed or names something that does not exist.

    The message always says which file and line (when known) is at fault.
    """


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    ``path`` is relative to the dataset root (absolute paths are kept as they are);
    ``label`` is the 0-based class index, -1 when unknown; ``group`` identifies the source
    (UCF101 group, surveillance source id) so splits can be kept leak-free;
    ``origin`` is ``"file:line"`` of the list line that produced the record, for error messages.
    """

    path: str
    label: int = -1
    group: str | None = None
    origin: str | None = None


@dataclass
class VideoIndex:
    """Records plus the class names, in label order."""

    records: list[VideoRecord]
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def subset(self, keep: list[int] | set[int]) -> VideoIndex:
        keep = sorted(set(keep))
        return VideoIndex([self.records[i] for i in keep], list(self.classes))

    def without(self, other: VideoIndex) -> VideoIndex:
        """Records whose path is not in ``other`` (matching ignores the file extension)."""
        drop = {path_key(r.path) for r in other.records}
        return VideoIndex([r for r in self.records if path_key(r.path) not in drop], list(self.classes))

    def with_root_check(self, root: str) -> VideoIndex:
        """Fail with the list file and line of the first record whose file is missing under ``root``."""
        for r in self.records:
            full = r.path if os.path.isabs(r.path) else os.path.join(root, r.path)
            if not os.path.exists(full):
                where = f" (listed at {r.origin})" if r.origin else ""
                raise SplitError(f"video file not found: {full}{where}")
        return self


def path_key(path: str) -> str:
    """A path without extension and with forward slashes, to match list entries across formats
    (raw-frame lists name videos without extension)."""
    # String methods only (no os.path): this runs for every entry of every list, 600,000 times
    # per list at Kinetics scale. Same result as os.path.splitext on the last path component.
    p = path.replace("\\", "/").strip("/") if "\\" in path or path[:1] == "/" or path[-1:] == "/" else path
    dot = p.rfind(".")
    slash = p.rfind("/")
    if dot > slash + 1 and p[slash + 1 : dot].lstrip(".") and p[dot:].lower() in _VIDEO_EXTENSIONS:
        return p[:dot]
    return p


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")
_VIDEO_EXTENSIONS = frozenset(VIDEO_EXTENSIONS)
