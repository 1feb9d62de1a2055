#!/usr/bin/env python3
"""Helper for writing jetqueue plugins in Python (standard library only).

A plugin is a function that takes a Job and returns a JSON-serializable
result or raises an exception:

    import jetqueue_plugin

    def handle(job):
        for i in range(10):
            job.check_cancelled()
            job.progress(i / 10, f"step {i}")
        return {"answer": 42}

    if __name__ == "__main__":
        jetqueue_plugin.run(handle)

run() speaks the worker's protocol: newline-delimited JSON objects on stdin
(execute, cancel, shutdown) and stdout (progress, log, result, error). It
serves both plugin modes. A persistent plugin (no JETQUEUE_JOB_ID in the
environment) runs job after job until it reads a shutdown message or the end
of stdin. An exec plugin runs the one job it is sent and exits.

A stdin reader thread handles cancel messages while the handler runs. Once
the cancel arrives, job.cancelled is True and job.check_cancelled() raises
Cancelled. A handler that raises Cancelled ends the job cancelled. Any other
exception fails the job, and its traceback goes to stderr, which the worker
keeps as log lines of the job.

While run() is active, print() and other writes to sys.stdout become log
lines of the job; only whole lines are sent, so they never mix with protocol
messages.
"""

import io
import json
import os
import queue
import sys
import threading
import traceback

__all__ = ["Cancelled", "Job", "run"]

_LEVELS = ("debug", "info", "warning", "error")


class Cancelled(Exception):
    """Raised by Job.check_cancelled() once the worker cancelled the job."""


class _Protocol:
    """Writes protocol messages to the real stdout, one whole line at a time."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message):
        """Send one message. Raise TypeError or ValueError if it is not valid JSON."""
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        self.write_line(line)

    def write_line(self, line):
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _LineWriter(io.TextIOBase):
    """Stands in for sys.stdout: passes on whole lines through the protocol lock."""

    def __init__(self, protocol):
        self._protocol = protocol
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self):
        return True

    def write(self, text):
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._protocol.write_line(line)
        return len(text)

    def flush(self):
        with self._lock:
            rest, self._buffer = self._buffer, ""
        if rest:
            self._protocol.write_line(rest)


class Job:
    """One job: its id, arguments and the calls a handler makes while it runs."""

    def __init__(self, message, protocol, cancel_event):
        self.id = message["job_id"]
        self.plugin_name = message.get("plugin_name", "")
        self.attempt = message.get("attempt", 1)
        self.args = message.get("args") or []
        self.kwargs = message.get("kwargs") or {}
        self.gpus = message.get("gpus") or []
        self._protocol = protocol
        self._cancel_event = cancel_event

    @property
    def cancelled(self):
        """True once the worker sent a cancel message for this job."""
        return self._cancel_event.is_set()

    def check_cancelled(self):
        """Raise Cancelled if the worker cancelled this job."""
        if self.cancelled:
            raise Cancelled(f"job {self.id} was cancelled")

    def progress(self, value, message=None):
        """Report the fraction done, 0 to 1, or -1 while indeterminate."""
        value = float(value)
        if value != -1 and not 0 <= value <= 1:
            raise ValueError(f"progress {value} is out of range: use 0 to 1, or -1 when indeterminate")
        msg = {"type": "progress", "job_id": self.id, "progress": value}
        if message is not None:
            msg["message"] = str(message)
        self._protocol.send(msg)

    def log(self, text, level="info"):
        """Write one line to the job's log; level is debug, info, warning or error."""
        if level not in _LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
        self._protocol.send({"type": "log", "job_id": self.id, "level": level, "message": str(text)})


class _Reader(threading.Thread):
    """Reads stdin: queues execute messages and marks cancelled jobs at once."""

    def __init__(self, stdin):
        super().__init__(name="jetqueue-stdin", daemon=True)
        self._stdin = stdin
        self._lock = threading.Lock()
        self._events = {}  # job id -> threading.Event, for queued and running jobs
        self.requests = queue.Queue()  # execute messages; None at shutdown or end of input

    def cancel_event(self, job_id):
        with self._lock:
            return self._events.setdefault(job_id, threading.Event())

    def forget(self, job_id):
        with self._lock:
            self._events.pop(job_id, None)

    def run(self):
        for line in self._stdin:
            try:
                message = json.loads(line)
            except ValueError:
                print(f"jetqueue_plugin: ignored a stdin line that is not JSON: {line[:200]!r}", file=sys.stderr)
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "execute":
                self.cancel_event(message.get("job_id", ""))
                self.requests.put(message)
            elif kind == "cancel":
                self.cancel_event(message.get("job_id", "")).set()
            elif kind == "shutdown":
                break
            else:
                print(f"jetqueue_plugin: ignored a stdin message of type {kind!r}", file=sys.stderr)
        self.requests.put(None)


def _execute(handler, message, protocol, reader):
    """Run one job and send its result or error. Return True when it completed."""
    job_id = message.get("job_id", "")
    job = Job(message, protocol, reader.cancel_event(job_id))
    try:
        try:
            result = handler(job)
        finally:
            sys.stdout.flush()  # a partial print() line belongs to this job
        try:
            protocol.send({"type": "result", "job_id": job_id, "result": result})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the handler's result is not JSON-serializable: {exc}") from exc
        return True
    except Cancelled as exc:
        protocol.send({"type": "error", "job_id": job_id, "error": str(exc) or "cancelled", "cancelled": True})
    except Exception as exc:  # noqa: BLE001 - every handler error becomes the job's error
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        protocol.send({"type": "error", "job_id": job_id, "error": f"{type(exc).__name__}: {exc}", "cancelled": job.cancelled})
    finally:
        reader.forget(job_id)
    return False


def run(handler):
    """Serve jobs with handler until shutdown (persistent mode) or after one job (exec mode).

    In exec mode the process exits with status 0 when the job completed and 1
    otherwise.
    """
    protocol = _Protocol(sys.stdout)
    sys.stdout = _LineWriter(protocol)
    reader = _Reader(sys.stdin)
    reader.start()
    exec_mode = "JETQUEUE_JOB_ID" in os.environ

    completed = True
    while True:
        message = reader.requests.get()
        if message is None:
            break
        completed = _execute(handler, message, protocol, reader)
        if exec_mode:
            break

    sys.stdout.flush()
    sys.stderr.flush()
    if exec_mode:
        # Leave without waiting for the reader thread, which blocks on stdin.
        os._exit(0 if completed else 1)
