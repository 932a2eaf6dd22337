"""Reading the members of a `.tar.gz` archive whole, so that damage is an error, never fewer files.

`tarfile` alone stops quietly at the first member header it cannot parse, and a gzip
stream's CRC is checked only once it is read to its end. `read_tar_gz` therefore reads the
whole stream in one pass (gzip then checks the CRC and length), and requires the members to
end at a real end-of-archive marker followed only by zero padding. The aclImdb, CIFAR and
Tiny-ImageNet readers all read their archives through it.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

_CHUNK = 1 << 20


def member_path(name: str) -> str:
  """A member's name without a leading "./", as archives made with `tar -C dir .` have it.

  >>> member_path("./cifar-10-batches-bin/test_batch.bin")
  'cifar-10-batches-bin/test_batch.bin'
  """
  while name.startswith("./"):
    name = name[2:]
  return name


def read_tar_gz(location: Path, keep: Callable[[str], bool], source: str) -> dict[str, bytes]:
  """Reads the regular-file members that `keep` selects, checking the whole archive.

  Args:
      location: the `.tar.gz` file.
      keep: whether to keep a member, given its path (see `member_path`).
      source: where to download the archive again, for the error message.

  Returns:
      The kept members' contents by path.

  Raises:
      ValueError: naming `location`: a damaged or truncated archive (a failed gzip CRC, a
          bad deflate stream, a member header that does not parse, no end-of-archive
          marker, data after it), or a kept member twice.
  """
  members: dict[str, bytes] = {}
  try:
    with gzip.open(location, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
      for member in archive:  # one sequential pass over the gzip stream
        path = member_path(member.name)
        if member.isfile() and keep(path):
          if path in members:
            raise ValueError(f"{location}: {path} appears twice in the archive")
          members[path] = archive.extractfile(member).read()
      # `tarfile` ends the iteration quietly at a header it cannot parse: what stopped it
      # must be an end-of-archive marker (a zero block), and only zero padding may follow.
      # Reading to the end makes gzip check the CRC and length of the whole stream.
      end = archive.offset
      stream.seek(end)
      marker = stream.read(tarfile.BLOCKSIZE)
      nonzero_after = False
      while chunk := stream.read(_CHUNK):
        nonzero_after = nonzero_after or chunk.count(0) != len(chunk)
  except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
    # BadGzipFile (CRC, length, header) is an OSError; a truncated stream an EOFError.
    raise ValueError(_damaged(location, f"{type(error).__name__}: {error}", source)) from error
  if len(marker) < tarfile.BLOCKSIZE:
    problem = f"the tar stream ends at byte {end:,} without an end-of-archive marker"
    raise ValueError(_damaged(location, problem + " (truncated)", source))
  if marker.count(0) != len(marker):
    problem = f"the tar member header at byte {end:,} does not parse"
    raise ValueError(
      _damaged(location, problem + ", so the members after it cannot be read", source)
    )
  if nonzero_after:
    problem = f"data follows the end-of-archive marker at byte {end:,}"
    raise ValueError(_damaged(location, problem, source))
  return members


def _damaged(location: Path, problem: str, source: str) -> str:
  return (
    f"{location}: damaged .tar.gz archive: {problem}. Nothing was loaded; download it again "
    f"from {source}"
  )
