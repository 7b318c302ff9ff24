"""Handing a branch to a forge: `git push` to a remote, and a pull request through GitHub's `gh`.

Most teams merge through pull requests, so a task's branch has to leave the machine.
The push goes through the hardened runner (no hooks a task could have planted, no
prompts, no `ext::` transport); `gh` is run from an argument list, never a shell
string, with the title and body as single arguments, so nothing an agent wrote can
become a command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.git.runner import first_line, git

PUSH_TIMEOUT = 300.0
GH_TIMEOUT = 120.0


def remotes(repo: Path) -> list[str]:
    return git(repo, "remote").stdout.split()


def check_remote(repo: Path, name: str) -> str:
    """A remote configured in the repository; anything else (a URL, an option) is refused."""
    known = remotes(repo)
    if not isinstance(name, str) or name.startswith("-") or name not in known:
        listed = ", ".join(known) or "none (add one with 'git remote add')"
        raise InvalidInput(f"unknown remote {name!r}; this repository's remotes: {listed}")
    return name


def push(repo: Path, remote: str, branch: str, sha: str, timeout: float = PUSH_TIMEOUT) -> None:
    """Push `sha` as `branch` to `remote`, refusing to overwrite someone else's newer commits there.

    The refspec names the commit rather than the local branch, so the pushed commit is
    exactly the one the caller measured, even if the branch moves meanwhile.
    """
    check_remote(repo, remote)
    if not sha or sha.startswith("-") or not branch or branch.startswith("-"):
        raise OrchestraError(f"cannot push {branch!r}: invalid branch or commit")
    proc = git(repo, "push", "--porcelain", remote, f"{sha}:refs/heads/{branch}", check=False, timeout=timeout)
    if proc.returncode != 0:
        said = proc.stderr.strip() or proc.stdout.strip()
        if "[rejected]" in proc.stdout or "non-fast-forward" in said or "fetch first" in said:
            raise OrchestraError(
                f"{remote} refused {branch}: it holds commits this branch lacks (someone pushed to it); "
                "fetch and reconcile it by hand"
            )
        raise OrchestraError(f"git push to {remote} failed: {first_line(said)}")


def gh_binary() -> str:
    found = shutil.which("gh")
    if not found:
        raise OrchestraError(
            "the GitHub CLI 'gh' is not on PATH: install it (https://cli.github.com) to open pull requests"
        )
    return found


def pr_argv(gh: str, *, head: str, base: str, title: str, body: str) -> list[str]:
    """The exact `gh pr create` command line: every value one argument, after its flag."""
    return [gh, "pr", "create", "--head", head, "--base", base, "--title", title, "--body", body]


def create_pr(repo: Path, *, head: str, base: str, title: str, body: str, timeout: float = GH_TIMEOUT) -> str:
    """Open a pull request with `gh pr create`; returns what gh printed last (the PR's URL)."""
    argv = pr_argv(gh_binary(), head=head, base=base, title=title, body=body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GH_PROMPT_DISABLED"] = "1"  # never wait on a question nobody will see
    try:
        proc = subprocess.run(
            argv,
            cwd=repo,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise OrchestraError(f"gh pr create did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise OrchestraError(f"cannot run gh: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        raise OrchestraError(f"gh pr create failed: {first_line(proc.stderr or proc.stdout)}")
    lines = proc.stdout.strip().splitlines()
    return lines[-1].strip() if lines else ""
