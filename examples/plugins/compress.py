#!/usr/bin/env python3
"""compress: an exec jetqueue plugin that gzips one file.

kwargs:
    src: the file to compress.
    dst: where to write the gzip file. It is written to a temporary file in
         the same directory and renamed into place when complete, so dst never
         contains a partial file.

Result: {"src": ..., "dst": ..., "bytes_in": N, "bytes_out": M}
Progress follows the bytes read. A cancel is honoured between reads of 1 MiB.
"""

import gzip
import os
import tempfile
import time

import jetqueue_plugin

CHUNK_BYTES = 1 << 20
PROGRESS_INTERVAL_SECONDS = 0.2


def require_path(job, name):
    value = job.kwargs.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f'kwarg "{name}" is missing: pass src=<file to compress> and dst=<gzip file to write>')
    return value


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def handle(job):
    src = require_path(job, "src")
    dst = require_path(job, "dst")
    try:
        size = os.stat(src).st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"src {src!r} does not exist") from None
    dst_dir = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(dst_dir):
        raise FileNotFoundError(f"directory {dst_dir!r} of dst {dst!r} does not exist")

    job.log(f"compressing {src} ({size} bytes) to {dst}")
    fd, tmp = tempfile.mkstemp(prefix=".compress-", suffix=".gz.tmp", dir=dst_dir)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; give dst the usual mode
    bytes_in = 0
    last_progress = time.monotonic()
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as raw, gzip.GzipFile(
            filename=os.path.basename(src), mode="wb", fileobj=raw
        ) as out:
            job.progress(0.0 if size else -1)
            while True:
                job.check_cancelled()
                chunk = fin.read(CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                bytes_in += len(chunk)
                now = time.monotonic()
                if size and now - last_progress >= PROGRESS_INTERVAL_SECONDS:
                    job.progress(min(bytes_in / size, 1.0), f"{bytes_in} of {size} bytes")
                    last_progress = now
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

    bytes_out = os.stat(dst).st_size
    job.progress(1.0, f"{bytes_in} bytes in, {bytes_out} bytes out")
    return {"src": src, "dst": dst, "bytes_in": bytes_in, "bytes_out": bytes_out}


if __name__ == "__main__":
    jetqueue_plugin.run(handle)
