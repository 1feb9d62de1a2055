#!/usr/bin/env python3
"""sleep: a jetqueue plugin that sleeps, for testing cancel and progress.

kwargs:
    seconds:  how long to sleep, a float. Defaults to 1.
    stubborn: when true, the plugin ignores the cancel message and SIGTERM,
              and starts a child process that ignores SIGTERM too and has
              the job id on its command line. Only SIGKILL to the process
              group stops them. Defaults to false.

Result: {"slept": seconds, "pid": <pid of the plugin process>}
The same script serves sleep.json (persistent) and sleep-exec.json (exec).
"""

import os
import signal
import subprocess
import sys
import time

import jetqueue_plugin

STEP_SECONDS = 0.05
PROGRESS_INTERVAL_SECONDS = 0.1

# The stubborn child: ignores SIGTERM and sleeps. argv[1] is the job id, so
# tests find the child by scanning process command lines.
CHILD_CODE = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"


def handle(job):
    seconds = float(job.kwargs.get("seconds", 1))
    stubborn = bool(job.kwargs.get("stubborn", False))
    if seconds < 0:
        raise ValueError(f'kwarg "seconds" is {seconds}: use 0 or more')

    job.progress(0.0, f"sleeping {seconds} s")
    if stubborn:
        return sleep_stubborn(job, seconds)

    start = time.monotonic()
    last_progress = start
    while True:
        job.check_cancelled()
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        if time.monotonic() - last_progress >= PROGRESS_INTERVAL_SECONDS:
            job.progress(elapsed / seconds, f"slept {elapsed:.1f} of {seconds} s")
            last_progress = time.monotonic()
        time.sleep(min(STEP_SECONDS, seconds - elapsed))
    job.progress(1.0, f"slept {seconds} s")
    return {"slept": seconds, "pid": os.getpid()}


def sleep_stubborn(job, seconds):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", CHILD_CODE, job.id])
    job.log(f"stubborn: ignoring cancel and SIGTERM; child pid {child.pid}")
    try:
        time.sleep(seconds)
    finally:
        child.kill()
        child.wait()
        signal.signal(signal.SIGTERM, previous)
    return {"slept": seconds, "pid": os.getpid()}


if __name__ == "__main__":
    jetqueue_plugin.run(handle)
