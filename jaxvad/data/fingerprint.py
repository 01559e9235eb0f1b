"""What a prepared cache was built from, and what changed since: a stat-only fingerprint (no decoding).

A prepared split lives in ``cache_dir/<dataset>/<root name>-<hash10>/<split>/<H>x<W>/`` where the hash is of the
resolved data root and the layout: two roots with the same data set name never share a cache. Its
``index.json`` records the fingerprint of everything the cache was built from:

  root, layout, scene_rule, size   the data config fields that shape the cache;
  decoder                          the resize filters and the decoder versions (Pillow, PyAV);
  labels                           the label file or folder, with [size, mtime_ns] of every file;
  videos                           per video, its frame files (or video file) and its mask source, each with
                                   [size, mtime_ns].

Each cached ``<video>.frames.npy`` / ``<video>.masks.npy`` also has a ``.json`` sidecar holding the fingerprint
it was decoded from, so that a changed input re-decodes only the videos whose files changed (and an interrupted
prepare resumes with the videos already done). Comparing fingerprints costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pathlib
from collections.abc import Mapping

import PIL

FORMAT = 2  # index.json format; 1 = before fingerprints (such caches are rebuilt).


def resolved(root: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(root).expanduser().resolve()


def root_key(root: str | pathlib.Path, layout: str = "community") -> str:
  """``<root folder name>-<first 10 hex of sha256(resolved root, layout)>``: the cache folder of one data root."""
  path = resolved(root)
  digest = hashlib.sha256(f"{path}\0{layout}".encode()).hexdigest()[:10]
  return f"{path.name or 'root'}-{digest}"


def stat(path: pathlib.Path) -> list[int] | None:
  """[size, mtime_ns] of a file, or None if it does not exist."""
  try:
    st = path.stat()
  except FileNotFoundError:
    return None
  return [int(st.st_size), int(st.st_mtime_ns)]


def tree(path: str | pathlib.Path | None) -> dict | None:
  """{"path", "files": {relative name: [size, mtime_ns]}} of a file or of every file below a folder; None for None."""
  if path is None:
    return None
  path = pathlib.Path(path)
  if path.is_dir():
    files = {str(f.relative_to(path)): stat(f) for f in sorted(path.rglob("*")) if f.is_file()}
  else:
    files = {path.name: stat(path)}
  return {"path": str(path.resolve()), "files": files}


def video(entry) -> dict:
  """Fingerprint of one discovered video (``layout.VideoEntry``): its source and every frame file's stat."""
  files = entry.frames if entry.kind == "frames" else (entry.source,)
  return {"source": str(pathlib.Path(entry.source).resolve()), "kind": entry.kind,
          "files": [[f.name, *(stat(f) or [-1, -1])] for f in files]}


def _version(dist: str) -> str | None:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def decoder(entries) -> dict:
  """How frames become cached arrays: resize filters and decoder versions (PyAV only for video files)."""
  out = {"resize": "PIL bilinear", "mask_resize": "PIL nearest", "pillow": PIL.__version__}
  if any(e.kind == "video" for e in entries):
    out["pyav"] = _version("av")
  return out


def split_fingerprint(*, root, layout: str, scene_rule: str, size, entries, labels, mask_of: Mapping) -> dict:
  """The fingerprint of one split as ``index.json`` records it (see the module docstring)."""
  return {
      "root": str(resolved(root)),
      "layout": layout,
      "scene_rule": scene_rule,
      "size": [int(s) for s in size],
      "decoder": decoder(entries),
      "labels": tree(labels),
      "videos": {e.name: {"frames": video(e),
                          "masks": tree(mask_of[e.name].source) if e.name in mask_of else None}
                 for e in entries},
  }


def _changed_files(old: dict | None, new: dict | None) -> str:
  """A short description of how a ``tree``/``video`` fingerprint changed."""
  if old is None or new is None:
    return "added" if old is None else "removed"
  if old.get("path", old.get("source")) != new.get("path", new.get("source")):
    return f"now read from {new.get('path', new.get('source'))}"
  o, n = old["files"], new["files"]
  if isinstance(o, list):
    o, n = {f[0]: f[1:] for f in o}, {f[0]: f[1:] for f in n}
  names = sorted(set(o) | set(n))
  diff = [f for f in names if o.get(f) != n.get(f)]
  if not diff:
    return "changed"
  shown = ", ".join(f"{f} ({'new' if f not in o else 'gone' if f not in n else 'modified'})" for f in diff[:3])
  return shown + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")


def differences(old: Mapping | None, new: Mapping) -> list[str]:
  """Human-readable differences between a recorded and a current fingerprint (empty: the cache is current)."""
  if not old:
    return ["the cache has no fingerprint (prepared by an older jaxvad)"]
  out = []
  for key in ("root", "layout", "scene_rule", "size", "decoder"):
    if old.get(key) != new.get(key):
      out.append(f"{key} {old.get(key)} -> {new.get(key)}")
  if old.get("labels") != new.get("labels"):
    out.append(f"labels {_changed_files(old.get('labels'), new.get('labels'))}")
  ov, nv = old.get("videos", {}), new.get("videos", {})
  for name in sorted(set(ov) | set(nv)):
    if name not in nv:
      out.append(f"video {name} removed")
    elif name not in ov:
      out.append(f"video {name} added")
    else:
      for part in ("frames", "masks"):
        if ov[name].get(part) != nv[name].get(part):
          out.append(f"video {name} {part}: {_changed_files(ov[name].get(part), nv[name].get(part))}")
  return out


def read_sidecar(path: pathlib.Path) -> dict | None:
  """The fingerprint recorded beside a cached array (``x.npy`` -> ``x.json``), or None."""
  try:
    return json.loads(path.with_suffix(".json").read_text())
  except (OSError, ValueError):
    return None
