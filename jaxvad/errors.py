"""jaxvad's user-facing error types.

Every error a user can cause (bad data, bad config, an unusable workdir, a
damaged checkpoint, a diverged run) derives from :class:`UserError`. The CLI
turns exactly these into one ``error: ...`` line; anything else is a bug in
jaxvad and keeps its traceback. Messages must be self-contained: they name the
file or field, the problem, and how to proceed.

``DataError`` and ``ConfigError`` also derive from ``ValueError`` so that
library callers catching ``ValueError`` keep working.
"""


class UserError(Exception):
  """A problem the user can fix; printed by the CLI as one line."""


class DataError(UserError, ValueError):
  """A problem with the user's data: the message names the file and the problem.

  E.g. ``"frame gap in /data/ped2/testing/frames/03: 017.jpg is followed by
  019.jpg (missing 018)"``.
  """


class ConfigError(UserError, ValueError):
  """A config that cannot be used: unknown field or value, wrong type, a missing section."""


class WorkdirError(UserError):
  """A workdir that cannot be used: not writable, no checkpoint, holds another run."""


class CheckpointError(DataError):
  """A checkpoint that cannot be read (damaged, empty, of another model)."""


class NonFiniteError(UserError, FloatingPointError):
  """Training produced NaN/Inf; the message names the step and the last good checkpoint."""
