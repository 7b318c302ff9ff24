"""`orchestra doctor`: check the store, the checkouts and the branches against each other.

Repairs are the ones that cannot lose anything: rebuild the index, the history and
the running totals from the task files, forget worktree registrations whose directory is gone, remove temp files
whose writer is dead, clear checkouts whose making was cut short, and settle
running tasks nobody runs any more the way a restarted scheduler would. Corrupt
task files, stray worktree directories, missing or rewritten branches and work
that never came home are only reported: they may hold someone's work, and a
person decides. Whether agents can start in their sandbox is checked too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.agent import claude, sandbox
from orchestra.core.config import CLAUDE_ENV
from orchestra.core.errors import OrchestraError, SchedulerBusy
from orchestra.core.task import State, Task
from orchestra.engine import recovery, refguard
from orchestra.engine import tasks as task_cases
from orchestra.engine.context import Context
from orchestra.engine.scheduler import Scheduler  # doctor --fix borrows the scheduler's lock and runners
from orchestra.engine.tempfiles import stale_temp_files
from orchestra.executors import agents_run_here, quick_problems
from orchestra.git import refs, workspace, worktrees
from orchestra.store import history
from orchestra.store import workflows as records
from orchestra.store.locks import exclusive
from orchestra.store.paths import Paths
from orchestra.store.scheduler import scheduler_pid
from orchestra.store.tasks import FINISHED_STATES, Store, read_index_file, tally

CLEANUP_LOCK_TIMEOUT = 600.0
# `.<target>.<pid>.<8 hex>.tmp`, as fileio.write_atomic names them.


@dataclass
class Finding:
    kind: str
    subject: str
    detail: str
    fixable: bool
    fixed: bool = False
    note: str | None = None  # what the fix did, or why it was not made
    harmless: bool = False  # reported, but no problem: it does not make the report not ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "fixable": self.fixable,
            "fixed": self.fixed,
            "note": self.note,
            "harmless": self.harmless,
        }


@dataclass
class DoctorReport:
    root: Path
    fix: bool
    scheduler_pid: int | None
    findings: list[Finding] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)  # the setting, and whether agents can start in it
    notices: list[str] = field(default_factory=list)  # worth knowing, not problems: `ok` ignores them
    claude_version: str | None = None  # what `claude --version` said; None when it did not run
    cluster: dict[str, Any] | None = None  # executor = ray: the cluster as each node reports it

    @property
    def ok(self) -> bool:
        """Healthy, or every problem found was repaired (harmless findings are no problem)."""
        return all(f.fixed or f.harmless for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": str(self.root),
            "fix": self.fix,
            "scheduler_pid": self.scheduler_pid,
            "ok": self.ok,
            "claude_version": self.claude_version,
            "findings": [f.to_dict() for f in self.findings],
            "sandbox": self.sandbox,
            "notices": self.notices,
            "cluster": self.cluster,
        }


def run(ctx: Context, fix: bool = False) -> DoctorReport:
    paths, store = ctx.paths, ctx.store
    sched = scheduler_pid(paths)
    report = DoctorReport(root=paths.root, fix=fix, scheduler_pid=sched)
    agents_here = agents_run_here(ctx.config)  # else on the nodes: the cluster_* findings
    _check_sandbox(ctx, report, agents_here)
    if agents_here:
        _check_claude(ctx, report)
    if not paths.state.is_dir():
        return report
    if _check_executor(ctx, report):
        return report  # with the cluster unreachable, nothing can tell running agents from dead ones
    tasks = _check_index(paths, store, report, fix)
    _check_unfinished_workflows(store, report, fix)
    _check_running(ctx, tasks, report, fix and sched is None)
    # Not while a cleanup removes worktrees and branches: one half removed is no problem to report.
    with exclusive(paths.cleanup_lock, CLEANUP_LOCK_TIMEOUT, "a cleanup is still running; run doctor when it ends"):
        _check_worktrees(paths, tasks, report, fix and sched is None)
        _check_branches(paths, store, tasks, report)
        _check_work_not_home(paths, tasks, report)
        _check_main_refs(ctx, tasks, report)
    _check_temp_files(paths, report, fix)
    _check_scheduler_info(paths, sched, report, fix)
    if fix and sched is not None:
        for f in report.findings:
            if f.fixable and not f.fixed and f.note is None:
                f.note = f"not fixed while a scheduler runs (pid {sched}); stop it and run doctor --fix again"
    return report


def _check_sandbox(ctx: Context, report: DoctorReport, agents_here: bool) -> None:
    """Whether agents can start in their sandbox (bubblewrap and socat on PATH), or run unconfined.

    Only a problem where agents run: a coordinator of a Ray cluster needs neither tool."""
    mode = ctx.config.sandbox
    missing = sandbox.unavailable()
    report.sandbox = {"setting": mode, "available": missing is None, "missing": missing}
    why = sandbox.problem(mode) if agents_here else None
    if why:
        report.findings.append(
            Finding("sandbox_unavailable", "sandbox", why, False, note="agents that change files do not start")
        )


def _check_claude(ctx: Context, report: DoctorReport) -> None:
    """Every agent is a `claude` process: one that does not start fails the whole queue."""
    binary = ctx.config.claude_binary_resolved
    try:
        report.claude_version = claude.version(binary)
    except OrchestraError as exc:
        report.findings.append(
            Finding(
                "claude_does_not_run",
                binary,
                str(exc),
                False,
                note=None if claude.INSTALL_HINT in str(exc) else _claude_hint(),
            )
        )


def _claude_hint() -> str:
    """Where to change the binary: ORCHESTRA_CLAUDE, when set, wins over claude_binary."""
    if os.environ.get(CLAUDE_ENV):
        return f"fix or unset {CLAUDE_ENV} (it overrides claude_binary)"
    return "install Claude Code or set claude_binary"


def _check_executor(ctx: Context, report: DoctorReport) -> bool:
    """Where agents run: reachable, and for a Ray cluster each node's versions, slots and `claude`.

    True when the executor cannot be reached (the checks of running tasks are skipped then).
    """
    problems = quick_problems(ctx.config)
    for problem in problems:
        report.findings.append(
            Finding("executor_unreachable", ctx.config.executor_name, problem, False, note="queued tasks wait for it")
        )
    if problems or ctx.config.executor_name != "ray":
        return bool(problems)
    survey = getattr(ctx.executor(), "cluster_report", None)
    if survey is None:
        return False
    try:
        report.cluster = survey()
    except Exception as exc:  # a cluster that answers TCP but not Ray: say so, do not crash doctor
        why = str(exc) if isinstance(exc, OrchestraError) else f"the Ray cluster does not answer: {exc}"
        report.findings.append(Finding("executor_unreachable", "ray", why, False))
        return True
    report.findings.extend(cluster_findings(report.cluster, ctx.config.sandbox))
    return False


def cluster_findings(cluster: Mapping[str, Any], sandbox_mode: str) -> list[Finding]:
    """What is wrong with each node that offers slots, from `cluster_report`'s survey.

    Separate from the survey so that what counts as a problem is checked without a cluster. Only
    nodes with slots count: the others never run an agent. A node without bwrap or socat is a
    problem only when the sandbox is required, since then every writing agent sent there fails.
    """
    out: list[Finding] = []
    mine = cluster["coordinator"]
    if not cluster["slots"]:
        out.append(
            Finding("cluster_no_slots", "ray", "no node offers the orchestra_agent resource; no agent can start", False)
        )
    if mine.get("remote_error"):
        out.append(_remote_finding("coordinator", mine["remote_error"], "from here"))
    for node in cluster["nodes"]:
        if not node.get("slots"):
            continue
        name = str(node.get("node") or node["node_id"][:12])
        for key in ("ray", "python", "orchestra"):
            theirs = node.get(key)
            if theirs and key != "python" and theirs != mine[key]:
                out.append(Finding("cluster_version", name, f"{key} {theirs} on the node, {mine[key]} here", False))
        if node.get("claude_error"):
            out.append(Finding("cluster_claude", name, f"claude does not run: {node['claude_error']}", False))
        if node.get("remote_error"):
            out.append(_remote_finding(name, node["remote_error"], "with the node's own credentials"))
        if sandbox_mode == sandbox.REQUIRED and node.get("sandbox_missing"):
            out.append(
                Finding(
                    "cluster_sandbox",
                    name,
                    f"the agent sandbox is required but unavailable on this node: {node['sandbox_missing']}",
                    False,
                    note='install bubblewrap and socat on the node, or set sandbox = "off"',
                )
            )
    return out


def _check_index(paths: Paths, store: Store, report: DoctorReport, fix: bool) -> dict[str, Task]:
    """Compare the caches (live index, history, running totals, corrupt list) with the task files.

    Read directly, not through the store: reading through it would repair what this is to report.
    """
    tasks: dict[str, Task] = {}
    with store.locked():  # writers hold the lock while the journal exists, so now it is stale
        stale_marker = paths.index_stale_marker.exists()
        recorded = read_index_file(paths.index)
        actual_tasks: dict[str, Any] = {}
        corrupt: dict[str, str] = {}
        for entry in _scan(paths.tasks):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                task = store.load(entry.name[: -len(".json")])
            except OrchestraError as exc:
                corrupt[entry.path] = str(exc)
                continue
            tasks[task.id] = task
            actual_tasks[task.id] = task.summary()
        problems: list[Finding] = []
        if stale_marker:
            problems.append(
                Finding(
                    "stale_index_marker",
                    str(paths.index_stale_marker),
                    "a write was interrupted between a task file and the index",
                    True,
                )
            )
        if recorded is None:
            problems.append(Finding("index_unreadable", str(paths.index), "missing or not an index", True))
        else:
            problems += _compare_caches(paths, store, recorded, actual_tasks, corrupt)
        if fix and problems:
            store.rebuild_index()
            for f in problems:
                f.fixed, f.note = True, "index and history rebuilt from the task files"
        report.findings += problems
    for path, reason in sorted(corrupt.items()):
        report.findings.append(
            Finding("corrupt_task_file", path, reason, False, note="kept as it is: repair or move it by hand")
        )
    return tasks


def _check_unfinished_workflows(store: Store, report: DoctorReport, fix: bool) -> None:
    """The unfinished-workflows cache must name every workflow whose record is not finished."""
    live_dir = store.paths.workflows / records.UNFINISHED_DIR
    if not live_dir.is_dir():
        return  # the first reader builds it
    with store.locked():
        unfinished, _ = records.unfinished_on_record(store)  # corrupt records are reported where they are read
        missing = sorted(unfinished - {p.name for p in live_dir.iterdir()})
        if not missing:
            return
        finding = Finding(
            "unfinished_workflows_cache",
            str(live_dir),
            f"does not name unfinished workflow(s) {', '.join(missing)}: status and a starting scheduler miss them",
            True,
        )
        if fix:
            records.rebuild_unfinished(store)
            finding.fixed, finding.note = True, "rebuilt from the workflow records"
        report.findings.append(finding)


def _compare_caches(
    paths: Paths, store: Store, recorded: dict[str, Any], actual_tasks: dict[str, Any], corrupt: dict[str, str]
) -> list[Finding]:
    problems: list[Finding] = []
    live = recorded["tasks"]
    h = recorded["history"]
    if not store.history_agrees(recorded):
        problems.append(
            Finding("history_unreadable", str(paths.history), "missing, replaced or shorter than the index says", True)
        )
    ended = {s["id"]: s for s in history.newest_first(paths.history, h["bytes"], h["ino"], skip=live)}
    indexed = {**ended, **live}
    for tid in sorted(set(actual_tasks) - set(indexed)):
        problems.append(Finding("index_missing_task", tid, "task file not in the index or history", True))
    for tid in sorted(set(indexed) - set(actual_tasks)):
        if not any(Path(p).name == f"{tid}.json" for p in corrupt):
            problems.append(Finding("index_extra_task", tid, "in the index but its task file is gone", True))
    for tid in sorted(set(indexed) & set(actual_tasks)):
        if _comparable(indexed[tid]) != _comparable(actual_tasks[tid]):
            problems.append(
                Finding(
                    "index_out_of_date",
                    tid,
                    f"index says {indexed[tid].get('state')}, task file says {actual_tasks[tid]['state']}",
                    True,
                )
            )
    done = [s for s in actual_tasks.values() if s["state"] in FINISHED_STATES]
    expected, kept = tally(done), recorded["finished"]
    if _comparable(expected) != _comparable(kept):
        diffs = [f"{k} {kept.get(k)} (files: {expected[k]})" for k in sorted(expected) if kept.get(k) != expected[k]]
        problems.append(Finding("index_totals_wrong", str(paths.index), "running totals: " + "; ".join(diffs), True))
    for path in sorted(set(corrupt) - set(recorded["corrupt"])):
        problems.append(Finding("index_corrupt_unnamed", path, "a corrupt task file status and list do not name", True))
    return problems


def _comparable(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, default=str)


def _check_running(ctx: Context, tasks: dict[str, Task], report: DoctorReport, fix: bool) -> None:
    if report.scheduler_pid is not None:
        return  # the scheduler watches its tasks; nothing is orphaned while it runs
    orphans: list[tuple[Task, Finding]] = []
    for task in tasks.values():
        if task.state not in (State.RUNNING, State.AWAITING_INPUT):
            continue
        if recovery.run_elsewhere(task):
            continue  # a merge a live process runs (a person's, or a stopped scheduler's runner)
        alive = not task.agentless and ctx.executor().adopt(task) is not None
        if alive:
            report.findings.append(
                Finding(
                    "unwatched_agent",
                    task.id,
                    f"{task.state}: its agent runs but no scheduler watches it",
                    False,
                    note="start a scheduler ('orchestra worker') to adopt it",
                )
            )
            continue
        finding = Finding("orphan_running", task.id, f"{task.state} but no agent and no scheduler", True)
        report.findings.append(finding)
        orphans.append((task, finding))
    if not (fix and orphans):
        return
    notes: list[str] = []
    sched = Scheduler(ctx, log=notes.append)
    try:
        sched.acquire()
    except SchedulerBusy as exc:
        for _, f in orphans:
            f.note = str(exc)
        return
    try:
        for task, _ in orphans:
            recovery.recover_one(ctx, task, sched.start_runner)  # the scheduler's own recovery
        for thread in list(sched.runners.values()):
            thread.join()
    finally:
        sched.release()
    for task, f in orphans:
        now_task = ctx.store.load(task.id)
        f.fixed = now_task.state not in (State.RUNNING, State.AWAITING_INPUT)
        f.note = f"now {now_task.state}" + (f" ({now_task.error})" if now_task.error else "")


def _check_worktrees(paths: Paths, tasks: dict[str, Task], report: DoctorReport, fix: bool) -> None:
    root = paths.worktrees
    for entry in _scan(root):
        path = Path(entry.path)
        if workspace.partial_owner(entry.name) is not None:
            continue  # a checkout being made, or one whose making was cut short (below)
        if entry.is_symlink():
            report.findings.append(
                Finding(
                    "symlinked_worktree",
                    str(path),
                    f"a symlink to {os.readlink(path)}; orchestra never follows it",
                    False,
                    note="remove the link by hand",
                )
            )
        elif entry.is_dir() and entry.name not in tasks:
            report.findings.append(
                Finding(
                    "worktree_without_task",
                    str(path),
                    "no task owns this directory",
                    False,
                    note="kept: it may hold work; remove it by hand when done",
                )
            )
    missing: list[Finding] = [
        Finding("worktree_missing", str(p), "registered with git but gone from disk", True)
        for p in worktrees.list_worktrees(paths.root)
        if os.path.realpath(p.parent) == os.path.realpath(root) and not os.path.lexists(p)
    ]
    half_made = worktrees.interrupted_adds(paths.root, root)
    halves = [
        (h, Finding("interrupted_worktree_add", str(h.path), "killed while it was being made", True)) for h in half_made
    ]
    report.findings += missing + [f for _, f in halves]
    if not fix:
        return
    with worktrees.WORKTREE_ADMIN_LOCK:
        for h, f in halves:
            worktrees.clear_interrupted_add(h)
            f.fixed, f.note = True, "removed (no agent had run in it)"
        if missing:
            worktrees.prune(paths.root)
            for f in missing:
                f.fixed, f.note = True, "registration pruned; the branch is kept"


def _check_branches(paths: Paths, store: Store, tasks: dict[str, Task], report: DoctorReport) -> None:
    try:
        branches = refs.branches(paths.root)
    except OrchestraError:
        return
    for task in sorted(tasks.values(), key=lambda t: t.id):
        if not task.branch or task.branch in branches or not task.attempts or task.agentless:
            continue
        # An agent was started, so its branch existed: someone other than `cleanup` deleted it since.
        events = [e.get("event") for e in store.events(task.id)]
        decided = [e for e in events if e in ("branch_deleted", "branch_kept")]
        if "started" in events and (not decided or decided[-1] != "branch_deleted"):
            path = paths.worktree(task.id)
            note = "its commits are gone from git unless another branch has them"
            if task.branch in workspace.unsaved_commits(paths.root, path):
                note = f"its commits are still in its checkout {path}; {task_cases.bring_home_advice(task, path)}"
            report.findings.append(
                Finding("branch_missing", task.id, f"branch {task.branch} does not exist", False, note=note)
            )


def _check_work_not_home(paths: Paths, tasks: dict[str, Task], report: DoctorReport) -> None:
    """Commits that stayed in a finished task's checkout, and branches moved back or aside since
    orchestra last left them (the work it brought home is no longer on them)."""
    try:
        heads = refs.heads(paths.root)
    except OrchestraError:
        return
    latest: dict[str, Task] = {}
    for task in tasks.values():
        if task.agentless or not task.branch:
            continue
        if task.state.final:
            path = paths.worktree(task.id)
            unsaved = workspace.unsaved_commits(paths.root, path) if workspace.is_task_repo(path) else []
            if unsaved:
                report.findings.append(
                    Finding(
                        "work_not_home",
                        task.id,
                        f"its checkout {path} has commits that are not in the main repository (on {', '.join(unsaved[:3])})",
                        False,
                        note=(
                            f"the task's error says why; {task_cases.bring_home_advice(task, path)} once that is solved"
                            if task.error
                            else task_cases.bring_home_advice(task, path)
                        ),
                    )
                )
        if task.branch_sha:
            known = latest.get(task.branch)
            if known is None or (task.finished_at or task.started_at or 0) >= (
                known.finished_at or known.started_at or 0
            ):
                latest[task.branch] = task
    for branch, task in sorted(latest.items()):
        head = heads.get(branch)
        if head is None or head == task.branch_sha or task.live:
            continue  # deleted (see branch_missing), unchanged, or being worked on
        if not refs.is_ancestor(paths.root, str(task.branch_sha), head):
            report.findings.append(
                Finding(
                    "branch_rewritten",
                    task.id,
                    f"branch {branch} no longer contains {str(task.branch_sha)[:12]}, where task {task.id} left it "
                    f"(now {head[:12]}); orchestra's agents cannot write there",
                    False,
                    note=f"'git reflog {branch}' shows who moved it",
                )
            )


def _check_main_refs(ctx: Context, tasks: dict[str, Task], report: DoctorReport) -> None:
    """Refs of the main repository that moved since a running task's run started (engine.refguard)."""
    for task_id, moved in sorted(refguard.live_changes(ctx, list(tasks.values())).items()):
        shown = ", ".join(f"{name} {(a or '(none)')[:12]}->{(b or '(none)')[:12]}" for name, (a, b) in moved.items())
        report.notices.append(f"since task {task_id} started, refs moved in the main repository: {shown}")


def _check_temp_files(paths: Paths, report: DoctorReport, fix: bool) -> None:
    """Temp files of a writer that died held nothing (the write they belonged to was never renamed
    into place): reported, removed with --fix and by every scheduler start, and no problem."""
    for path in stale_temp_files(paths):
        f = Finding("stale_temp_file", str(path), "left by a writer that died; it holds nothing", True, harmless=True)
        if fix:
            try:
                os.unlink(path)
                f.fixed, f.note = True, "removed"
            except FileNotFoundError:
                f.fixed, f.note = True, "gone meanwhile"
            except OSError as exc:
                f.note = f"cannot remove: {exc.strerror}"
        report.findings.append(f)


def _check_scheduler_info(paths: Paths, sched: int | None, report: DoctorReport, fix: bool) -> None:
    if sched is None and paths.scheduler_info.exists():
        f = Finding("stale_scheduler_info", str(paths.scheduler_info), "no scheduler runs", True)
        if fix:
            paths.scheduler_info.unlink(missing_ok=True)
            f.fixed, f.note = True, "removed"
        report.findings.append(f)


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []


def _remote_finding(where: str, error: str, how: str) -> Finding:
    """ray_git_remote unreadable somewhere: every task that starts or ends there fails to move its commits."""
    return Finding(
        "cluster_remote",
        where,
        f"ray_git_remote cannot be read {how}: {error}",
        False,
        note="give it access to the remote, or unset ray_git_remote to send commits through Ray",
    )
