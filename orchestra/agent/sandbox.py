"""Claude Code's sandbox for agents: whether it can run here, the settings that make it fail closed,
and what each run gets besides (its own temp directory, flags that keep the checkout's own
Claude Code settings out).

Facts relied on (research/sandbox/FINDINGS.md, CLI 2.1.332): the sandbox wraps every Bash
command and its children in bubblewrap, with writes allowed only in the working directory and
the session's temp directory, and needs `bwrap` and `socat` on PATH. `failIfUnavailable`
makes a run without them end at once with an error result instead of running unsandboxed;
`allowUnsandboxedCommands: false` takes away the model's `dangerouslyDisableSandbox`; the
settings apply per invocation, so a `--resume` needs them again; the init line says
`sandbox_enabled`. Write and Edit are not sandboxed: `blockWritesOutsideWorkingDirectories`
and the `.git` deny rules make their refusals final instead of questions to a person.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

REQUIRED = "required"
OFF = "off"
MODES = (REQUIRED, OFF)
BINARIES = ("bwrap", "socat")
_PACKAGES = {"bwrap": "bubblewrap (bwrap)", "socat": "socat"}

SETTINGS: dict[str, Any] = {
    "enabled": True,
    "failIfUnavailable": True,
    "allowUnsandboxedCommands": False,
    "autoAllowBashIfSandboxed": False,
}

# Refusals the permission-prompt tool must never turn into a question: a person's approval of a
# Write there would be honoured outside the sandbox. `Edit(.git/**)` would break `git commit` in
# the sandbox (Edit rules become sandbox deny paths) and `Edit(/.git/**)` does not match.
PROTECTED_DENY: tuple[str, ...] = (
    "Edit(.git/config)",
    "Edit(.git/hooks/**)",
    "Edit(.git/info/**)",
    "Edit(.git/objects/info/**)",
    "Edit(.git/modules/**)",
    "Edit(**/.git/**)",
)
PERMISSION_SETTINGS: dict[str, Any] = {"blockWritesOutsideWorkingDirectories": True}

# Only the user's own Claude Code settings: a branch an agent wrote can carry a `.claude/settings.json`
# whose hooks Claude Code would run outside the sandbox, and a `.mcp.json`.
CLI_FLAGS: tuple[str, ...] = ("--setting-sources", "user")

TMPDIR_ENV = "CLAUDE_CODE_TMPDIR"


def settings(allow_write: list[str] | None = None, allow_domains: list[str] | None = None) -> dict[str, Any]:
    """The `sandbox` object of a run's --settings, widened only by what the user configured."""
    out: dict[str, Any] = dict(SETTINGS)
    if allow_write:
        out["filesystem"] = {"allowWrite": list(allow_write)}
    if allow_domains:
        out["network"] = {"allowedDomains": list(allow_domains)}
    return out


def unavailable(path: str | None = None) -> str | None:
    """Why the sandbox cannot run with this PATH (None when it can)."""
    missing = [name for name in BINARIES if shutil.which(name, path=path) is None]
    if not missing:
        return None
    names = " and ".join(_PACKAGES[m] for m in missing)
    return f"{names} {'is' if len(missing) == 1 else 'are'} not installed"


def problem(mode: str, path: str | None = None) -> str | None:
    """Why agents cannot start under this `sandbox` setting, as one line; None when they can."""
    if mode != REQUIRED:
        return None
    why = unavailable(path)
    if why is None:
        return None
    return (
        f"the agent sandbox is required but unavailable: {why}; install bubblewrap and socat, "
        'or set sandbox = "off" to run agents unconfined'
    )


def tmpdir(root: Path, task_id: str) -> Path:
    """A short private temp directory per task (Claude Code ignores long ones: socket paths)."""
    import hashlib  # loads OpenSSL, ~3 ms: status never makes a task's temp directory

    digest = hashlib.sha256(str(root).encode()).hexdigest()[:6]
    return Path("/tmp") / f"orch-{digest}-{task_id}"


def make_tmpdir(root: Path, task_id: str) -> Path:
    """Create the task's temp directory, mode 0700, refusing one someone else planted."""
    path = tmpdir(root, task_id)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise OSError(f"{path} exists and is not this user's directory") from None
        os.chmod(path, 0o700)
    return path


def remove_tmpdir(root: Path, task_id: str) -> None:
    path = tmpdir(root, task_id)
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
        shutil.rmtree(path, ignore_errors=True)


def confine(
    argv: list[str], workdir: Path, tmp: Path, allow_write: list[str] | None = None, network: bool = False
) -> list[str]:
    """`argv` wrapped in bubblewrap for the commands orchestra itself runs on a tree an agent wrote
    (the merge gate, `setup`): such a tree's code (a conftest.py, a Makefile, package scripts) must
    not write outside it or reach the network, as it could not from an agent's own Bash.

    Everything is read-only but `workdir`, the private `tmp` (TMPDIR) and `allow_write`; the
    network is cut unless `network` (sandbox_allow_domains set: bubblewrap cannot filter hosts).
    Raises OSError when bwrap is not installed: such a command must not then run unconfined.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise OSError("bubblewrap (bwrap) is not installed")
    out = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in [workdir, tmp, *(Path(os.path.expanduser(p)) for p in allow_write or [])]:
        if path.exists():
            out += ["--bind", str(path), str(path)]
    if not network:
        out.append("--unshare-net")
    out += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(workdir), "--", *argv]
    return out
