"""Bad input: one clear line on stderr, a non-zero exit, and nothing changed or lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import git


def _tasks(repo: Path) -> list[str]:
    d = repo / ".orchestra" / "tasks"
    return sorted(p.name for p in d.glob("*.json")) if d.exists() else []


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestra: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_not_a_git_repository(orch, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    _one_line_error(orch.run_process("submit", "--no-start", "x", cwd=plain), "not a git repository")
    _one_line_error(orch.run("status", cwd=plain), "not a git repository")
    assert not (plain / ".orchestra").exists()


def test_bare_repository(orch, tmp_path: Path):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    _one_line_error(orch.run("submit", "--no-start", "x", cwd=bare), "bare repository")
    assert not (bare / ".orchestra").exists()


def test_repository_without_commits(orch, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    _one_line_error(orch.run("submit", "--no-start", "x", cwd=empty), "no commits")
    assert _tasks(empty) == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--role", "wizard", "x"], "unknown role 'wizard'"),
        (["--after", "zzzzzz", "x"], "no task zzzzzz"),
        (["--after", "../etc", "x"], "invalid task id"),
        (["--on", "zzzzzz", "x"], "no task zzzzzz"),
        (["--base", "no-such-branch", "x"], "does not name a commit"),
        (["--base=-x", "x"], "may not start with '-'"),
        (["--base", "HEAD", "--on", "abc", "x"], "either --on"),
        (["   "], "empty prompt"),
        (["--priority", "high", "x"], "invalid priority"),
        (["--priority", "99999", "x"], "between"),
        (["--timeout", "soon", "x"], "invalid timeout"),
        (["--timeout", "-5", "x"], "invalid timeout"),
        (["--timeout", "0", "x"], "greater than zero"),
        (["--title", " ", "x"], "empty title"),
        ([], "empty prompt"),  # stdin is /dev/null here
    ],
)
def test_submit_refuses_bad_input_and_creates_nothing(orch, args: list[str], needle: str):
    existing = orch.submit("an existing task")
    before = _tasks(orch.repo)
    _one_line_error(orch.run("submit", "--no-start", *args), needle)
    assert _tasks(orch.repo) == before
    assert orch.show(existing)["state"] == "queued"


def test_unknown_task_ids(orch):
    orch.submit("something")
    for cmd in (
        ["show", "zzzzzz"],
        ["logs", "zzzzzz"],
        ["wait", "zzzzzz"],
        ["cancel", "zzzzzz"],
        ["retry", "zzzzzz"],
        ["priority", "zzzzzz", "3"],
    ):
        _one_line_error(orch.run(*cmd), "no task zzzzzz")
    for evil in ("../../etc/passwd", "a/b", "-rf", "AB$", ".."):
        _one_line_error(orch.run("show", "--", evil), "invalid task id")


def test_a_workflow_id_given_where_a_task_id_goes_says_so(orch):
    """`workflow start` prints an id that looks like a task's; `show` and `logs` of it point to
    `workflow show`."""
    wf_id = orch.run("workflow", "start", "--no-start", "feature", "Add a thing", check=True).stdout.strip()
    for cmd in (["show", wf_id], ["logs", wf_id]):
        _one_line_error(orch.run(*cmd), f"{wf_id} is a workflow: see 'orchestra workflow show {wf_id}'")


def test_usage_errors_are_one_line(orch):
    # The real binary: its exit status and its stderr, which no traceback may reach.
    _one_line_error(orch.run_process("submit", "--no-start", "--no-such-flag", "x"), "No such option")
    _one_line_error(orch.run_process("frobnicate"), "No such command")
    assert orch.run_process("frobnicate").returncode == 2


def test_bad_config_is_reported_with_the_file(orch):
    cfg = orch.repo / ".orchestra" / "config.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text("max_concurrent = 'many'\n")
    _one_line_error(orch.run("status"), str(cfg), "max_concurrent")
    cfg.write_text("max_concurrent = [\n")
    _one_line_error(orch.run("status"), str(cfg), "invalid TOML")
    cfg.write_text("colour = 'blue'\n")
    _one_line_error(orch.run("status"), "unknown setting 'colour'")


def test_dependency_cycles_are_refused(orch):
    """The CLI cannot build a cycle (ids are new), but the core guards the graph for any caller."""
    from orchestra.app import Orchestra

    a = orch.submit("a")
    core = Orchestra(orch.repo)
    b = core.submit("b", after=[a], start=False)
    # Make `a` depend on `b` behind the core's back, then ask for a task that closes the loop.
    with core.store.locked():
        task = core.store.load(a)
        task.depends_on = [b.id]
        core.store.save(task)
    proc = orch.run("submit", "--no-start", "--after", a, "closes nothing but waits on a loop")
    assert proc.returncode == 1
    assert "dependency cycle" in proc.stderr and a in proc.stderr and b.id in proc.stderr

    # A scheduler faced with such a loop ends its members instead of waiting forever.
    assert orch.work(timeout=60).returncode == 0
    for tid in (a, b.id):
        task = orch.show(tid)
        assert task["state"] == "failed" and "dependency cycle" in task["error"]


def test_config_values_may_start_with_a_dash(orch):
    """`config set claude_args "--model opus"` stores the words: a value is not an option of `config set`."""
    assert orch.run("config", "set", "claude_args", "--model opus", check=True).stdout.strip() == (
        'claude_args = ["--model", "opus"]'
    )
    assert orch.run("config", "get", "claude_args", check=True).stdout.strip() == '["--model", "opus"]'
    _one_line_error(orch.run("config", "set", "max_concurrent", "-3"), "invalid max_concurrent -3")


def test_a_usage_error_names_the_whole_command_to_ask_for_help(orch):
    _one_line_error(orch.run("config", "set"), "Missing argument", "(see 'orchestra config set --help')")
    _one_line_error(orch.run("workflow", "show"), "(see 'orchestra workflow show --help')")


def test_listing_by_an_unknown_role_is_refused_like_an_unknown_state(orch):
    orch.submit("one")
    _one_line_error(
        orch.run("list", "--role", "implementor"), "unknown role 'implementor'", "did you mean 'implementer'"
    )
    _one_line_error(orch.run("list", "--json", "--role", "implementor"), "unknown role 'implementor'")
    assert orch.run("list", "--role", "generalist", check=True).stdout.count("generalist") == 1
    assert orch.run("list", "--role", "merge", check=True).returncode == 0  # a workflow's own step is a role too


def test_respond_refuses_allow_with_deny_and_answers_nothing(orch):
    tid = orch.submit("ask first\n@fake ask bash echo hi > asked.txt\n@fake text done")
    worker = orch.start_worker("--until-idle")
    task = orch.wait_for(
        lambda: (t := orch.show(tid))["state"] == "awaiting_input" and t["pending_request"] and t,
        what="a permission request",
    )
    for flags in (["--allow", "--deny"], ["--deny", "--allow"]):
        proc = orch.run("respond", tid, *flags)
        _one_line_error(proc, "give --allow or --deny, not both")
        assert proc.returncode == 2
        assert orch.show(tid)["pending_request"] == task["pending_request"]  # still asked, not answered
    orch.run("respond", tid, "--deny", check=True)
    worker.wait(timeout=60)
    assert orch.state(tid) == "succeeded" and not (Path(orch.show(tid)["worktree"]) / "asked.txt").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["respond", "{id}", "--always"],
        ["respond", "{id}", "--deny", "--always"],
        ["respond", "{id}", "--allow", "--message", "why"],
        ["respond", "{id}", "--allow", "a reply"],
        ["submit", "--no-start", ""],
        ["workflow", "start", "--no-start", "feature", ""],
        ["workflow", "start", "--no-start", "feature"],
    ],
)
def test_usage_errors_exit_2_wherever_they_are_caught(orch, args: list[str]):
    """Contradictory or missing pieces of a command exit 2, like click's own usage errors."""
    tid = orch.submit("queued")
    before = _tasks(orch.repo)
    proc = orch.run(*[a.replace("{id}", tid) for a in args])
    _one_line_error(proc)
    assert proc.returncode == 2, proc.stderr
    assert _tasks(orch.repo) == before


def test_a_refused_request_exits_1(orch):
    tid = orch.submit("queued")
    for args in (["respond", tid, "--allow"], ["show", "zzzzzz"], ["config", "set", "timeout", "soon"]):
        assert orch.run(*args).returncode == 1, args
    orch.run("cancel", tid, check=True)
    again = orch.run("cancel", tid)
    assert again.returncode == 1
    assert f"task {tid} has already ended (cancelled); there is nothing to cancel" in again.stderr


@pytest.mark.parametrize("command", [["cancel"], ["queue", "remove"], ["retry"], ["stop"]])
def test_many_ids_change_all_or_none_and_name_every_bad_one(orch, command: list[str]):
    ok, other = orch.submit("first"), orch.submit("second")
    proc = orch.run(*command, ok, "nosuch", other, "zzzzzz")
    _one_line_error(proc, "no task nosuch", "no task zzzzzz", "nothing was")
    assert proc.returncode == 1
    assert [orch.state(t) for t in (ok, other)] == ["queued", "queued"]


def test_cancel_of_many_good_ids_cancels_each(orch):
    tasks = [orch.submit("first"), orch.submit("second")]
    _one_line_error(orch.run("cancel", *tasks, tasks[0][:3] + "x9"))  # an unknown prefix among them
    assert orch.run("cancel", *tasks, tasks[0], check=True).stdout.split() == [
        tasks[0],
        "cancelled",
        tasks[1],
        "cancelled",
    ]
    _one_line_error(orch.run("queue", "remove", *tasks), f"task {tasks[0]} is cancelled, not queued", tasks[1])


def test_a_one_character_prefix_is_refused_for_being_short(orch):
    tid = orch.submit("something")
    _one_line_error(orch.run("show", tid[0]), "a prefix needs at least 2 characters")
    assert orch.run("show", tid[:2], check=True).returncode == 0
    _one_line_error(orch.run("show", "a" * 33), "at most 32 characters")


def test_a_batch_of_equal_priority_runs_in_file_order(orch):
    lines = "".join(f'{{"prompt": "t{n}"}}\n' for n in range(1, 41))
    ids = orch.run("submit", "--no-start", "--batch", "-", input=lines, check=True).stdout.split()
    queue = json.loads(orch.run("queue", "--json", check=True).stdout)
    assert [row["id"] for row in queue] == ids
    assert [orch.show(t)["prompt"] for t in (ids[0], ids[-1])] == ["t1", "t40"]


def test_an_optional_setting_is_turned_off_with_unset(orch):
    _one_line_error(orch.run("config", "set", "gate", "null"), "to turn gate off, use 'orchestra config unset gate'")
    assert orch.run("config", "set", "gate", "pytest -q", check=True).stdout.strip() == 'gate = "pytest -q"'
    assert orch.run("config", "get", "gate", check=True).stdout == "pytest -q\n"
    assert orch.run("config", "unset", "gate", check=True).stdout.strip() == 'gate = "" (the default)'
    assert orch.run("config", "get", "gate", check=True).stdout == "\n"
    assert "gate" not in (orch.repo / ".orchestra" / "config.toml").read_text()
    for key in ("gate", "setup", "on_event", "ray_address", "ray_git_remote"):  # empty is off, for each of them
        assert orch.run("config", "set", key, "", check=True).stdout.strip() == f'{key} = ""'
        _one_line_error(orch.run("config", "set", key, "None"), f"orchestra config unset {key}")
    _one_line_error(orch.run("config", "set", "claude_binary", ""), "non-empty")  # not optional: unset it
    _one_line_error(orch.run("config", "unset", "gatee"), "unknown setting 'gatee'", "did you mean 'gate'")


def test_config_set_and_unset_mend_the_key_that_breaks_the_file(orch):
    cfg = orch.repo / ".orchestra" / "config.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text('# mine\nmax_concurrent = "lots"\nautostart = false\n')
    _one_line_error(orch.run("status"), "max_concurrent")
    assert orch.run("config", "set", "max_concurrent", "2", check=True).stdout.strip() == "max_concurrent = 2"
    assert cfg.read_text() == "# mine\nmax_concurrent = 2\nautostart = false\n"
    cfg.write_text('max_concurrent = "lots"\ncolour = "blue"\n')
    _one_line_error(orch.run("config", "set", "autostart", "false"), str(cfg), "max_concurrent")  # another key
    assert cfg.read_text() == 'max_concurrent = "lots"\ncolour = "blue"\n'
    orch.run("config", "unset", "max_concurrent", check=True)  # each bad key is mended in turn
    _one_line_error(orch.run("status"), "unknown setting 'colour'")
    assert orch.run("config", "unset", "colour", check=True).stdout.strip() == "colour removed"
    assert cfg.read_text() == "\n"
    assert orch.run("status", check=True).returncode == 0


def test_settings_that_bound_each_other_are_refused_out_of_order(orch):
    _one_line_error(
        orch.run("config", "set", "api_backoff_max", "10"), "invalid api_backoff_max 10: must be at least api_backoff"
    )
    _one_line_error(orch.run("config", "set", "api_backoff", "2h"), "must be at most api_backoff_max (900)")
    orch.run("config", "set", "api_backoff_max", "3h", check=True)
    orch.run("config", "set", "api_backoff", "2h", check=True)
    _one_line_error(orch.run("config", "unset", "api_backoff_max"), "must be at least api_backoff (7200)")
    cfg = orch.repo / ".orchestra" / "config.toml"
    cfg.write_text("api_backoff = 100\napi_backoff_max = 10\n")
    _one_line_error(orch.run("status"), str(cfg), "api_backoff_max")
    _one_line_error(orch.run("config", "set", "timeout", "-1"), "invalid timeout '-1': must be greater than zero")
