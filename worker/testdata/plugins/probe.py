#!/usr/bin/env python3
"""A plugin for the worker's protocol tests, written against the raw protocol.

Each job runs the actions in kwargs["actions"] in order, then sends a final
message: an error when kwargs["error"] is set, nothing when
kwargs["no_final"] is true, and otherwise a result that describes the
process: {"pid", "env", "gpus", "args", "kwargs"}.

Actions (one key each):
    {"log": text}            a log message
    {"lines": n}             n log messages "job <id> line <i>", 5 ms apart
    {"progress": value}      a progress message, even one out of range
    {"bad_progress": true}   a progress message whose value is a string
    {"stale": job_id}        a progress message of 0.99 for another job id
    {"stdout": text}         a raw stdout line that is not a protocol message
    {"stderr": text}         a stderr line
    {"long_stdout": n}       a raw stdout line of n bytes
    {"sleep": seconds}
    {"wait_cancel": true}    read stdin until this job's cancel message, then
                             end the job with a cancelled error
    {"linger": n}            from a thread, n more log messages of this job
                             after it ended, 10 ms apart
    {"ignore_shutdown": true} ignore shutdown messages and the end of stdin
                             from now on, as a hung plugin would
    {"exit": code}           exit at once with that status
"""

import json
import os
import sys
import threading
import time

lock = threading.Lock()
ignore_shutdown = False


def send(message):
    write(json.dumps(message))


def write(line, stream=None):
    stream = stream or sys.stdout
    with lock:
        stream.write(line + "\n")
        stream.flush()


def linger(job_id, count):
    time.sleep(0.05)
    for i in range(count):
        send({"type": "log", "job_id": job_id, "level": "info", "message": f"job {job_id} linger {i}"})
        time.sleep(0.01)


def wait_cancel(job_id):
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "cancel" and message.get("job_id") == job_id:
            return True
    return False


def run_job(message):
    global ignore_shutdown
    job_id = message["job_id"]
    kwargs = message.get("kwargs") or {}
    for action in kwargs.get("actions", []):
        (kind, value), = action.items()
        if kind == "log":
            send({"type": "log", "job_id": job_id, "level": "info", "message": value})
        elif kind == "lines":
            for i in range(value):
                send({"type": "log", "job_id": job_id, "level": "info", "message": f"job {job_id} line {i}"})
                time.sleep(0.005)
        elif kind == "progress":
            send({"type": "progress", "job_id": job_id, "progress": value, "message": "probe"})
        elif kind == "bad_progress":
            send({"type": "progress", "job_id": job_id, "progress": "half"})
        elif kind == "stale":
            send({"type": "progress", "job_id": value, "progress": 0.99, "message": "stale"})
        elif kind == "stdout":
            write(value)
        elif kind == "stderr":
            write(value, sys.stderr)
        elif kind == "long_stdout":
            write("x" * value)
        elif kind == "sleep":
            time.sleep(value)
        elif kind == "wait_cancel":
            if wait_cancel(job_id):
                send({"type": "error", "job_id": job_id, "error": "stopped on cancel", "cancelled": True})
                return
        elif kind == "linger":
            threading.Thread(target=linger, args=(job_id, value), daemon=True).start()
        elif kind == "ignore_shutdown":
            ignore_shutdown = True
        elif kind == "exit":
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(value)

    if kwargs.get("no_final"):
        return
    if "error" in kwargs:
        send({"type": "error", "job_id": job_id, "error": kwargs["error"]})
        return
    env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "JETQUEUE_PLUGIN", "JETQUEUE_JOB_ID", "PROBE_MARK")}
    result = {"pid": os.getpid(), "env": env, "gpus": message.get("gpus"), "args": message.get("args"), "kwargs": kwargs}
    send({"type": "result", "job_id": job_id, "result": result})


def main():
    exec_mode = "JETQUEUE_JOB_ID" in os.environ
    for line in sys.stdin:
        message = json.loads(line)
        kind = message.get("type")
        if kind == "execute":
            run_job(message)
            if exec_mode:
                break
        elif kind == "shutdown" and not ignore_shutdown:
            break
    while ignore_shutdown:
        time.sleep(1)


if __name__ == "__main__":
    main()
