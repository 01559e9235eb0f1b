"""Builds jaxvad TFDS data sets from the archives a user downloaded, without TensorFlow (``jaxvad build-tfds``).

A config is ``<H>x<W>`` (frames resized once, from the originals, with the frame cache's PIL bilinear filter) or
``original`` (native size), made on the fly for any size: ``--size 64`` builds ``64x64``, whose windows equal the
frame cache's at 64x64 bit for bit. Names and defaults (builder of a data set, ``$TFDS_DATA_DIR``) live in
``tfds_source``, which imports without tensorflow-datasets.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from jaxvad.data.errors import DataError
from jaxvad.data.tfds_source import builder_name, config_name, default_data_dir, import_tfds, size_of

def build(dataset: str, manual_dir, data_dir=None, *, size="256x256", videos: dict | None = None,
          progress: bool = True) -> pathlib.Path:
  """Builds one data set (``download_and_prepare`` with a manual directory); a finished build is reused.

  Args:
    dataset: jaxvad name ("ped2", "avenue", ...) or builder name ("ucsd_ped2", ...).
    manual_dir: where the archive was unpacked (or a frame-folder copy, for UCSD).
    data_dir: TFDS data directory (default ``default_data_dir()``).
    size: config: ``"256x256"``, ``64``, ``(64, 64)``, ``"original"``...
    videos: optional ``{"train": names, "test": names}`` subset (the config name then gets a ``-subset``
      suffix so that it never passes for the full data set).
    progress: show TFDS's progress bars.

  Returns:
    The built folder ``data_dir/<builder>/<config>/<version>``.

  Raises:
    DataError: tfds missing, unknown data set, no archive in ``manual_dir``, or a malformed archive.
  """
  tfds = import_tfds()
  from jaxvad.data import tfds_builders  # pylint: disable=g-import-not-at-top
  name = builder_name(dataset)
  manual_dir = pathlib.Path(manual_dir).expanduser()
  if not manual_dir.is_dir():
    raise DataError(f"manual directory {manual_dir} does not exist (unpack the {name} archive there; "
                    f"see docs/datasets.md)")
  data_dir = pathlib.Path(data_dir).expanduser() if data_dir else default_data_dir()
  config = config_name(size)
  if videos:
    config += "-subset"
  cls = tfds_builders.BUILDERS[name]
  if config in {c.name for c in cls.BUILDER_CONFIGS}:  # TFDS refuses a custom config named like a declared one.
    builder = cls(config=config, data_dir=str(data_dir))
  else:
    builder = cls(config=tfds_builders.VadConfig(name=config, size=size_of(config.removesuffix("-subset")),
                                                 videos=videos), data_dir=str(data_dir))
  # Archive and layout checks before TFDS starts: find the root, discover the first split (decodes nothing).
  builder._raw_videos(builder._find_data_root(manual_dir), cls.SPLITS[0])  # pylint: disable=protected-access
  if not progress:
    tfds.disable_progress_bar()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return pathlib.Path(builder.data_dir)


def build_many(datasets: Sequence[str], manual_dir, data_dir=None, *, size="256x256",
               progress: bool = True) -> dict[str, pathlib.Path | str]:
  """Builds several data sets; one whose archive is absent or malformed is skipped with a message.

  Returns:
    data set -> built folder, or the one-line reason it was skipped.
  """
  out = {}
  for dataset in datasets:
    try:
      out[dataset] = build(dataset, manual_dir, data_dir, size=size, progress=progress)
    except DataError as e:
      out[dataset] = str(e).splitlines()[0]
  return out
