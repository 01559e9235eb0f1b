"""The one exception type for user-facing data problems."""


class DataError(ValueError):
  """A problem with the user's data: the message names the file and the problem.

  The CLI prints it as a single line (no traceback), so messages must be
  self-contained, e.g. ``"frame gap in /data/ped2/testing/frames/03: 017.jpg is
  followed by 019.jpg (missing 018)"``.
  """
