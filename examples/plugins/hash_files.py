#!/usr/bin/env python3
"""hash-files: a persistent jetqueue plugin that hashes a file or a directory tree.

kwargs:
    path: a file or a directory. The path itself may be a symbolic link;
          links inside a directory are skipped, never followed.

Result: {"files": N, "bytes": B, "sha256": "<hex>"}
    N counts the regular files, B is the sum of their sizes in bytes.
    sha256 is the SHA-256 over, for each file in order of its relative path
    (compared as bytes), the bytes

        relative_path + b"\\0" + <hex SHA-256 of the file's content> + b"\\n"

    where relative_path is the path below the directory with "/" between
    the parts, or the file's own name when path is a file.

Progress follows the bytes hashed; a log line reports the count every 2 s
or every 1,000 files. A cancel is honoured between reads of 1 MiB.
"""

import hashlib
import os
import stat
import time

import jetqueue_plugin

CHUNK_BYTES = 1 << 20
LOG_INTERVAL_SECONDS = 2.0
LOG_INTERVAL_FILES = 1000
PROGRESS_INTERVAL_SECONDS = 0.2


def list_files(top):
    """Return (relative path as bytes, full path) of the regular files under top, sorted."""
    try:
        top_stat = os.stat(top)
    except FileNotFoundError:
        raise FileNotFoundError(f"path {top!r} does not exist") from None
    if stat.S_ISREG(top_stat.st_mode):
        return [(os.fsencode(os.path.basename(top)), top)]
    if not stat.S_ISDIR(top_stat.st_mode):
        raise ValueError(f"path {top!r} is neither a regular file nor a directory")

    files = []

    def raise_walk_error(error):
        raise error

    for directory, _dirs, names in os.walk(top, followlinks=False, onerror=raise_walk_error):
        for name in names:
            full = os.path.join(directory, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                relative = os.path.relpath(full, top).replace(os.sep, "/")
                files.append((os.fsencode(relative), full))
    files.sort()
    return files


def handle(job):
    path = job.kwargs.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError('kwarg "path" is missing: pass the file or directory to hash, such as path=/data')

    job.progress(-1, "listing files")
    files = list_files(path)
    sizes = [os.lstat(full).st_size for _, full in files]
    total = sum(sizes)
    job.log(f"hashing {len(files)} files, {total} bytes, under {path}")

    digest = hashlib.sha256()
    done_bytes = 0
    last_log = last_progress = time.monotonic()
    job.progress(0.0 if total else 1.0, f"0 of {len(files)} files")
    for count, (relative, full) in enumerate(files, start=1):
        file_hash = hashlib.sha256()
        try:
            with open(full, "rb") as f:
                while True:
                    job.check_cancelled()
                    chunk = f.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    file_hash.update(chunk)
                    done_bytes += len(chunk)
                    now = time.monotonic()
                    if total and now - last_progress >= PROGRESS_INTERVAL_SECONDS:
                        job.progress(min(done_bytes / total, 1.0), f"{count - 1} of {len(files)} files")
                        last_progress = now
        except FileNotFoundError:
            raise FileNotFoundError(f"file {full!r} disappeared while hashing") from None
        digest.update(relative + b"\0" + file_hash.hexdigest().encode() + b"\n")

        now = time.monotonic()
        if count % LOG_INTERVAL_FILES == 0 or now - last_log >= LOG_INTERVAL_SECONDS:
            job.log(f"hashed {count} of {len(files)} files, {done_bytes} bytes")
            last_log = now

    job.progress(1.0, f"{len(files)} of {len(files)} files")
    return {"files": len(files), "bytes": done_bytes, "sha256": digest.hexdigest()}


if __name__ == "__main__":
    jetqueue_plugin.run(handle)
