"""`python -m orchestra.agent.guard OWNER_PID RUN_DIR -- ARGV...`: run an agent that dies with its owner.

On a Ray node the agent's owner is an actor process. Ray SIGKILLs only an actor's
direct children when it ends (ray.kill, a crash, its node's raylet dying), and its
process-group cleanup does not reach a child that called setsid(), so a plain
`Popen(start_new_session=True)` agent would be orphaned and keep running unwatched.

The guard double-forks (so it is not a direct child Ray would kill with the actor),
starts ARGV in its own session, writes RUN_DIR/pids.json once it runs, and when ARGV
ends writes RUN_DIR/rc. If the owner dies first it ends ARGV's whole process group:
SIGTERM, then SIGKILL after ORCHESTRA_GUARD_GRACE seconds. stdout and stderr are
inherited: the caller points them at the transcript and stderr files.

It imports only the standard library, so it can start as `python -S -I guard.py …`
(no site-packages, no environment): a quarter of a second less of every dispatch.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time


def _write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        print("usage: python -m orchestra.agent.guard OWNER_PID RUN_DIR -- ARGV...", file=sys.stderr)
        return 2
    owner, run_dir, command = int(args[0]), args[1], args[3:]
    grace = float(os.environ.get("ORCHESTRA_GUARD_GRACE", "10"))
    owner_fd = os.pidfd_open(owner)  # opened while the owner is certainly alive
    if os.fork():
        os._exit(0)  # the owner reaps this intermediate at once
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        child = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"cannot start {command[0]}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        _write(os.path.join(run_dir, "rc"), json.dumps({"rc": 127, "reason": "not started", "t": time.time()}))
        return 0
    _write(os.path.join(run_dir, "pids.json"), json.dumps({"guard": os.getpid(), "pid": child.pid}))
    watcher = select.poll()
    watcher.register(owner_fd, select.POLLIN)
    reason = "exited"
    while True:
        try:
            rc = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if watcher.poll(0):  # the owner is gone: the agent must not outlive it
            reason = "owner died"
            _killpg(child.pid, signal.SIGTERM)
            try:
                rc = child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _killpg(child.pid, signal.SIGKILL)
                rc = child.wait()
            break
    _killpg(child.pid, signal.SIGKILL)  # what the agent left in its group (background jobs)
    _write(os.path.join(run_dir, "rc"), json.dumps({"rc": rc, "reason": reason, "t": time.time()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
