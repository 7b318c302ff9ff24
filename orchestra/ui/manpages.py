"""Man pages generated from the click definitions, so they cannot drift from the CLI.

    python -m orchestra.ui.manpages man/

writes man/orchestra.1 and one page per subcommand (orchestra-queue-remove.1, ...).
Output is deterministic: no dates, the package version in the footer, commands in
name order; a test regenerates into a temporary directory and diffs. Sections that
click cannot know (exit status, environment, files, completion) live here as text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestra import __version__
from orchestra.ui.main import program

EXIT_STATUS = [
    ("0", "Success."),
    (
        "1",
        "A refused or failed request: an unknown task, a value not accepted, a state that does not allow it, "
        "a failed task (wait), a broken repository. One line on stderr says why.",
    ),
    (
        "2",
        "Usage error: an unknown option, a missing argument, options that contradict each other or go only "
        "with another, a required text given empty. Nothing was done.",
    ),
    ("3", "wait: a task it waits for is awaiting input (a permission request or a question)."),
    ("124", "wait: the --timeout passed before the tasks ended."),
    (
        "130",
        "Interrupted by Ctrl-C (except status --watch and logs --follow, which exit 0, and worker, which "
        "stops cleanly and exits 0: its agents keep running and the next scheduler adopts them).",
    ),
]

ENVIRONMENT = [
    ("ORCHESTRA_CLAUDE", "The claude executable to run (overrides the claude_binary setting)."),
    (
        "ORCHESTRA_NODE_DIR",
        "On a Ray node (in the environment of its ray start): where orchestra keeps its mirrors, "
        "task checkouts and transcripts (default ~/.orchestra-node).",
    ),
    (
        "ORCHESTRA_NODE_SPARES",
        "On a Ray node: how many checkouts per repository the node makes ahead of its runs "
        "(default: as many as the runs it holds, at most 4; 0 turns them off).",
    ),
    (
        "ORCHESTRA_NODE_NAME",
        "On a Ray node: the name status, show and list --json give the node (default its hostname).",
    ),
    ("NO_COLOR", "When set to anything, no colour is used. Colour is only used on a terminal anyway."),
    ("COLUMNS", "The width of the status picture when output is not a terminal (default 80)."),
    ("_ORCHESTRA_COMPLETE", "Set by the shell completion scripts; see SHELL COMPLETION."),
    (
        "ORCHESTRA_TEST_CRASH_AT",
        "For tests only: POINT[:N] makes the scheduler kill itself (SIGKILL) the "
        "N-th time it passes that point (after_claim, before_worktree, after_worktree, "
        "after_spawn, after_started, before_finalize, after_commit, after_finalize, "
        "between_task_and_index, recover, merge_before_move, merge_after_move).",
    ),
]

FILES = [
    (".orchestra/", "State of the repository, at the root of the main worktree (ignored by git)."),
    (".orchestra/config.toml", "Settings; see orchestra-config(1)."),
    (".orchestra/tasks/ID.json", "One file per task, the truth about it."),
    (".orchestra/logs/ID.jsonl", "The agent's stream-json transcript; read it with orchestra-logs(1)."),
    (
        ".orchestra/worktrees/ID",
        "The task's checkout: a git repository of its own (objects borrowed from the main one), on its "
        "branch. Inspect a task's work from the main repository (git log -p BRANCH), not with git inside it.",
    ),
    (".orchestra/guard/ID.json", "The main repository's refs when the task's current run started."),
    (".orchestra/scheduler.log", "What the background scheduler did, including why tasks do not start."),
    (".orchestra/events/ID.jsonl", "The task's append-only event log."),
    (".orchestra/requests/ID/", "Permission requests of a task waiting for a person; see orchestra-respond(1)."),
    (".orchestra/workflows/ID.json", "One file per workflow; see orchestra-workflow(1)."),
    (
        ".orchestra/workflows/unfinished/",
        "A cache: one empty file per workflow that has not finished, so status reads only those records. "
        "Rebuilt from the records when missing; doctor checks it; safe to delete.",
    ),
    (
        ".orchestra/index.json, .orchestra/history.jsonl",
        "Caches: the unfinished tasks and running totals, and one line per task that ended. "
        "Rebuilt from the task files when missing or in doubt; safe to delete.",
    ),
    (
        ".orchestra/archive/",
        "Task records moved there by orchestra-prune(1), one compressed JSON-lines file per run; pruned.tsv names the file each task went into.",
    ),
]

COMPLETION = """Completion for bash, zsh and fish comes from click. Task ids, roles, states,
settings and workflow templates are completed. Add one line to your shell's start-up file:
.PP
.nf
.RS
# ~/.bashrc
eval "$(_ORCHESTRA_COMPLETE=bash_source orchestra)"
# ~/.zshrc
eval "$(_ORCHESTRA_COMPLETE=zsh_source orchestra)"
# ~/.config/fish/completions/orchestra.fish
_ORCHESTRA_COMPLETE=fish_source orchestra | source
.RE
.fi"""

CONVENTIONS = """Data goes to stdout and diagnostics to stderr. Every command that lists
something takes \\fB\\-\\-json\\fR for output a program can read. Errors are one line,
\\fBorchestra: error: ...\\fR, and never a traceback. Colour is used only on a terminal
and never when NO_COLOR is set."""

EXTRA: dict[str, list[tuple[str, str]]] = {
    "": [
        (
            "SECURITY",
            "Task text, role files, configuration values and MCP arguments never become part of a "
            "shell command: programs run from argument lists; setup, on_event and gate are the "
            "user's own strings and get task data only through the environment and stdin. Refs "
            "starting with -, ids that are not lowercase letters and digits, and a symlink at a "
            "task's worktree path are refused. .orchestra/ is private (directories 0700, files "
            "0600). The values of ANTHROPIC_API_KEY and of variables ending in _TOKEN, _SECRET, "
            "_KEY or _PASSWORD are masked in what orchestra stores (result, error, denials, "
            "permission requests, gate and on_event output) and shows (show, status, logs, "
            "logs --raw, the MCP server), whoever reads: the scheduler records salted "
            "fingerprints of its secrets when it starts, never the values (with executor = ray, "
            "each node sends the fingerprints of its own). A merge never "
            "changes .orchestra/ and never overwrites a file git ignores in your checkout; "
            "a branch that adds conflict markers is not merged. Over MCP, configure_orchestrator "
            "does not change settings that run commands or widen what agents may do "
            "(claude_binary, claude_args, permission_mode, permission_prompts, sandbox, sandbox_allow_write, sandbox_allow_domains, executor, ray_address, ray_env, ray_git_remote, copy, setup, "
            "on_event, gate, merge_approval): a person sets those with orchestra config set.",
        ),
        (
            "SANDBOX",
            "Each task works in a repository of its own under .orchestra/worktrees/, and its Bash "
            "commands, with everything they start, run in Claude Code's sandbox (bubblewrap and socat "
            "must be installed): they can write only in that directory and a private temp directory, "
            "reach no network host, and leave no process behind. Orchestra passes the sandbox settings on "
            "every run, resumed ones too, stops a run whose init line does not report the sandbox on, "
            "loads only the user's own Claude Code settings, and brings a task's work home only by "
            "fetching its branch. Its own git never runs hooks, fsmonitor, filters, drivers or pagers "
            "from a checkout. The gate and setup commands, which run code from agents' branches, run "
            "in bubblewrap too: writable only their checkout, a private TMPDIR and sandbox_allow_write, "
            "no network unless sandbox_allow_domains is set. "
            "With sandbox = off agents run unconfined and test runners and git "
            "log/diff/show ask a person. See docs/security.md for the threat model and how to widen "
            "the box on purpose.",
        ),
    ],
    "config": [
        (
            "SANDBOX SETTINGS",
            "sandbox: 'required' (the default) runs every agent that changes files in Claude Code's "
            "sandbox, and fails such tasks at once, with the reason, when bubblewrap or socat is not "
            "on PATH; 'off' runs agents unconfined (status and doctor say so) and leaves git "
            "log/diff/show and the test runners out of the roles' allow lists. "
            "sandbox_allow_write: absolute paths (or ~/...) sandboxed commands may also write, e.g. a "
            "package cache. sandbox_allow_domains: host names sandboxed commands may reach, e.g. "
            "pypi.org; none by default. 'orchestra config list' shows every setting with its meaning.",
        )
    ],
    "doctor": [
        (
            "REPAIRS",
            "With --fix, doctor rebuilds the index from the task files, prunes worktree "
            "registrations whose directory is gone, clears worktree creations git left half "
            "done, and settles running tasks that have "
            "neither an agent nor a scheduler the way a restarted scheduler would. It never "
            "deletes a branch, a corrupt task file or a directory that may hold work, and "
            "while a scheduler runs it leaves worktrees and running tasks to it. Temp files "
            "whose writer died hold nothing: doctor notes them without failing, --fix and "
            "every scheduler start remove them. Doctor waits for a running cleanup before it "
            "looks at worktrees and branches.",
        ),
        (
            "CHECKS",
            "Besides the repairs above, doctor reports: claude that does not run (claude_does_not_run) "
            "and the agent sandbox required but bubblewrap or socat missing (sandbox_unavailable), both "
            "only where agents run (executor = local), and a note when sandbox = off; commits left in a "
            "finished task's checkout that never came home (work_not_home); a task branch that no "
            "longer contains what orchestra left on it (branch_rewritten); and, as notices that do not "
            "fail it, refs of the main repository that moved since a running task started. With "
            "executor = ray, it surveys the cluster: each node's versions, slots, claude and sandbox "
            "tools (cluster_version, cluster_claude, cluster_sandbox), and, with ray_git_remote set, "
            "that this machine and each node can read that remote with their own credentials "
            "(cluster_remote).",
        ),
    ],
    "wait": [
        (
            "EXIT STATUS",
            "0 when every task succeeded; 1 when any failed, was cancelled or timed out; "
            "3 as soon as any of them is awaiting input (it will not move until someone "
            "answers); 124 when --timeout passed first.",
        )
    ],
    "status": [
        (
            "DISPLAY",
            "Tasks waiting for you come first, then running agents (role, elapsed time, "
            "turns, cost so far and the last thing each did), the queue in run order with "
            "what each task waits for, active workflows with their current step, recent "
            "results, and the spend against the repository budget (budget_usd). With "
            "--watch on a terminal the picture is redrawn in place until Ctrl-C, "
            "which exits 0; when output is not a terminal it is printed again every "
            "interval, without control codes.",
        )
    ],
    "submit": [
        (
            "BUDGETS",
            "--budget USD limits what the task may spend over all its runs; each run "
            "gets the remainder as claude --max-budget-usd. A run that reaches it ends "
            "with error_max_budget_usd and the task fails with the reason. Without "
            "--budget the role's default budget applies, if it has one. The repository "
            "setting budget_usd stops new starts once the total spend reaches it.",
        ),
        (
            "MORE THAN ONE MACHINE",
            "With the setting executor = ray (and ray_address = HOST:PORT) tasks run on the nodes of a "
            "Ray cluster, each taking one orchestra_agent slot. --resources JSON asks for more, e.g. "
            "'{\"gpu_box\": 1}', so the task runs only on a node started with that resource; roles "
            "(resources = {gpu_box = 1}) and the setting resources do the same for all their tasks. "
            "The task's starting commit travels to the node through Ray, and its branch comes back here "
            "as orchestra/ID-SLUG. Only the environment variables named in ray_env are sent along. "
            "With ray_git_remote = URL (a git remote this machine and every node reach with their own "
            "credentials) the commits travel through that remote instead, under refs/orchestra/, which "
            "are deleted once the branch is home.",
        ),
    ],
    "serve": [
        (
            "TOOLS",
            "submit_task, list_processes, process_details, respond_to_process, manage_queue, "
            "stop_process, configure_orchestrator, assign_role, create_workflow, "
            "status_dashboard, wait_for_task (returns when the task ends or within 50 seconds), "
            "merge (not a workflow waiting for a person's approval), retry_task, set_budget, list_workflows, "
            "show_workflow, wait_for_workflow (as wait_for_task), show_diff, push_branch and cancel_workflow. Each validates its arguments with the same core as the "
            "command line and answers with readable text and structured content.",
        ),
        (
            "RESOURCES",
            "orchestra://status, orchestra://tasks/ID/log (a task's rendered transcript), "
            "orchestra://roles, orchestra://roles/NAME, orchestra://workflows, "
            "orchestra://workflows/NAME.",
        ),
        (
            "REGISTERING",
            "Claude Code: claude mcp add orchestra -- orchestra serve [--repo PATH]. "
            "Claude Desktop: an entry in claude_desktop_config.json under mcpServers "
            'with "command": "orchestra" and "args": ["serve", "--repo", PATH]. '
            "With autostart = false no scheduler is started: run orchestra worker.",
        ),
    ],
}


def esc(text: str) -> str:
    """Roff-safe text: backslashes, dashes and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> str:
    blocks = [" ".join(block.split()) for block in text.strip().split("\n\n") if block.strip()]
    return "\n.PP\n".join(esc(b) for b in blocks)


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is not None and not cmd.hidden:
            out.append((name, cmd))
    return out


def _page(path: list[str], cmd: click.Command, ctx: click.Context, root: bool) -> str:
    name = "-".join(path)
    title = name.upper()
    lines = [
        f'.TH "{title}" "1" "" "orchestra {__version__}" "orchestra manual"',
        ".SH NAME",
        f"{esc(name)} \\- {esc(cmd.get_short_help_str(limit=200))}",
        ".SH SYNOPSIS",
        f".B {esc(' '.join(path))}",
        esc(_usage(cmd)),
        ".SH DESCRIPTION",
        _paragraphs(cmd.help or ""),
    ]
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if args:
        lines.append(".SH ARGUMENTS")
        for p in args:
            lines += [".TP", f".I {esc(_arg_metavar(p))}", _arg_help(path, p)]
    opts = [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    opts.append(click.Option(["-h", "--help"], is_flag=True, help="Show the help and exit."))
    lines.append(".SH OPTIONS")
    for opt in opts:
        record = opt.get_help_record(ctx)
        if record:
            lines += [".TP", f".B {esc(record[0])}", esc(record[1]) or "\\&"]
    if isinstance(cmd, click.Group):
        lines.append(".SH COMMANDS")
        for sub_name, sub in _commands(cmd, ctx):
            lines += [
                ".TP",
                f".B {esc(sub_name)}",
                esc(sub.get_short_help_str(limit=200)) + f"\nSee \\fB{esc('-'.join(path + [sub_name]))}\\fR(1).",
            ]
    for heading, body in EXTRA.get(" ".join(path[1:]), []):
        lines += [f".SH {heading}", _paragraphs(body)]
    if root:
        lines += [".SH CONVENTIONS", CONVENTIONS, ".SH EXIT STATUS"]
        for code, text in EXIT_STATUS:
            lines += [".TP", f".B {code}", esc(text)]
        lines.append(".SH ENVIRONMENT")
        for var, text in ENVIRONMENT:
            lines += [".TP", f".B {esc(var)}", esc(text)]
        lines.append(".SH FILES")
        for file, text in FILES:
            lines += [".TP", f".I {esc(file)}", esc(text)]
        lines += [".SH SHELL COMPLETION", COMPLETION]
    lines += [".SH SEE ALSO", "\\fBorchestra\\fR(1)" if not root else "\\fBclaude\\fR(1), \\fBgit\\-worktree\\fR(1)"]
    return "\n".join(line for line in lines if line != "") + "\n"


def _usage(cmd: click.Command) -> str:
    """The synopsis, built here rather than by click, whose wording changes between releases."""
    pieces = ["[OPTIONS]"]  # every command has at least --help
    pieces += [_arg_metavar(p) for p in cmd.params if isinstance(p, click.Argument)]
    if isinstance(cmd, click.Group):
        pieces.append("[COMMAND] [ARGS]..." if cmd.invoke_without_command else "COMMAND [ARGS]...")
    return " ".join(pieces)


def _arg_metavar(p: click.Argument) -> str:
    name = (p.metavar or p.name or "ARG").upper()
    if p.nargs != 1:
        name += "..."
    return name if p.required else f"[{name}]"


# What each positional argument is, by name; a command whose argument means something else
# under the same name has its own entry, "COMMAND PATH:name". Arguments have no help in click.
ARGUMENTS = {
    "task_id": "A task id, or a unique prefix of one (at least 2 characters).",
    "task_ids": "One or more task ids (or unique prefixes of at least 2 characters).",
    "prompt": "What the agent should do; '-' (or nothing, with stdin not a terminal) reads it from stdin.",
    "ref": "A task id or a workflow id, or a unique prefix of one: for a workflow, its result branch.",
    "text": "A reply that continues the task's Claude session; '-' reads it from stdin.",
    "key": "A setting's name, as 'orchestra config list' shows them.",
    "value": "The new value, checked as the setting's type; a list as a JSON array or space-separated words.",
    "name": "A role's name, as 'orchestra roles' lists them.",
    "template": "The workflow template's name, as 'orchestra workflow templates' lists them "
    "(feature, bug-fix, refactor, code-review, or your own).",
    "request": "What the team should do; or give it with --file.",
    "workflow_id": "A workflow id, or a unique prefix of one.",
    "priority:value": "The new priority, a whole number from -1000 to 1000; higher runs first.",
}


def _arg_help(cmd_path: list[str], p: click.Argument) -> str:
    """A real description for every argument: a new one without an entry here stops the pages being made."""
    name = p.name or ""
    text = ARGUMENTS.get(f"{' '.join(cmd_path[1:])}:{name}") or ARGUMENTS.get(name)
    if text is None:
        raise KeyError(f"no description of argument {name!r} of {' '.join(cmd_path)}: add it to manpages.ARGUMENTS")
    return esc(text)


def pages(group: click.Group) -> dict[str, str]:
    """File name -> page text, for the group and every visible subcommand below it."""
    out: dict[str, str] = {}

    def walk(path: list[str], cmd: click.Command, parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        out["-".join(path) + ".1"] = _page(path, cmd, ctx, root=parent is None)
        if isinstance(cmd, click.Group):
            for name, sub in _commands(cmd, ctx):
                walk(path + [name], sub, ctx)

    walk(["orchestra"], group, None)
    return out


def write(directory: Path, group: click.Group | None = None) -> list[Path]:
    """Regenerate every page; stale pages of removed commands are deleted."""
    group = program if group is None else group
    directory.mkdir(parents=True, exist_ok=True)
    generated = pages(group)
    for old in directory.glob("orchestra*.1"):
        if old.name not in generated:
            old.unlink()
    written = []
    for name, text in sorted(generated.items()):
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestra.ui.manpages DIRECTORY", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
