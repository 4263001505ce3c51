"""Files that visitors send: the one way the app reads them.

A file parameter of the app (an image, a mask) is trusted only as Gradio's file object for a file
that Gradio's upload route stored in its upload folder. A plain string, a path elsewhere on the
server, a link out of the folder, a pipe or a device is refused with one line that names no
server path. Reading never blocks (regular files only, opened non-blocking without following a
final link) and is bounded: the size is checked before a byte is read.

Uploads are read into memory once (``bytes``): what decodes them never reopens the path, so a
file that Gradio shares between requests with the same content can go away without breaking a
request that already holds it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from osprey.core.errors import ServiceError

MAX_UPLOAD_BYTES = 64 * 2**20  # the app's own ceiling, below or at the server's --max-file-size


class UploadError(ServiceError):
    """A file parameter that is not a usable upload (the message names no server path)."""


def upload_folder() -> Path:
    """Gradio's upload folder (``$GRADIO_TEMP_DIR`` or ``<tmp>/gradio``), resolved."""
    from gradio.utils import get_upload_folder

    return Path(os.path.realpath(get_upload_folder()))


def upload_path(file: Any, what: str = "file") -> Path:
    """The path of an uploaded file given as Gradio's file object (a ``FileData`` or its dict);
    :class:`UploadError` for anything else (a string, a path outside the upload folder)."""
    path = getattr(file, "path", None) if not isinstance(file, dict) else file.get("path")
    if isinstance(file, str) or not isinstance(path, str) or not path:
        raise UploadError(
            f"{what} must be a file uploaded with the request (a file object, e.g. "
            "gradio_client's handle_file(...)), not a path or text"
        )
    real = Path(os.path.realpath(path))
    if "\x00" in path or not real.is_relative_to(upload_folder()):
        raise UploadError(f"{what} was not uploaded to this server; upload the file itself")
    return real


@contextmanager
def open_upload(
    file: Any, what: str = "file", max_bytes: int = MAX_UPLOAD_BYTES
) -> Iterator[IO[bytes]]:
    """An uploaded file (see :func:`upload_path`) open for reading: a regular file inside the
    upload folder, at most ``max_bytes``, opened without blocking and without following a
    link; closed after the block. For a file read as it is decoded (a video), not all at once."""
    path = upload_path(file, what)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UploadError(
            f"the uploaded {what} is no longer on the server; send it again"
        ) from None
    except OSError:
        raise UploadError(f"the uploaded {what} cannot be read; send it again") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UploadError(f"{what} is not a regular uploaded file")
        if info.st_size > max_bytes:
            raise UploadError(
                f"{what} is {info.st_size / 2**20:.1f} MB, above the limit of "
                f"{max_bytes / 2**20:.0f} MB"
            )
        f = os.fdopen(fd, "rb", closefd=True)
        fd = -1
    finally:
        if fd >= 0:
            os.close(fd)
    with f:
        yield f


def read_upload(file: Any, what: str = "file", max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file (see :func:`open_upload`), read into memory at once."""
    with open_upload(file, what, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise UploadError(f"{what} is above the limit of {max_bytes / 2**20:.0f} MB")
    return data
