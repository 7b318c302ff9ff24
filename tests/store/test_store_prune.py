"""`orchestra prune`: history is archived only when a person asks, and never work that is not merged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git
from store_helpers import assert_caches_agree, populate

from orchestra.app import Orchestra
from orchestra.engine import prune
from orchestra.engine import tasks as task_cases
from orchestra.engine.prune import read_archive

NOON_UTC = 1_700_049_600.0  # 2023-11-15 12:00 UTC
DAY = 86_400.0


def _prune(orch, *args: str) -> dict:
    proc = orch.run("prune", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _files(orch) -> set[str]:
    return {p.stem for p in (orch.repo / ".orchestra" / "tasks").glob("*.json")}


def test_prune_archives_merged_and_cleaned_tasks_and_keeps_unmerged_work(orch):
    merged = orch.submit("merged work\n@fake write m.txt m\n@fake commit Add m")
    unmerged = orch.submit("unmerged work\n@fake write u.txt u\n@fake commit Add u")
    never = orch.submit("never ran")
    orch.run("cancel", never, check=True)
    assert orch.work().returncode == 0
    assert orch.run("merge", merged).returncode == 0
    merge_step = next(
        t["id"] for t in json.loads(orch.run("list", "--merges", "--json", check=True).stdout) if t["role"] == "merge"
    )
    # Before cleanup the worktrees exist: nothing with a worktree is archived.
    early = _prune(orch, "--keep", "0", "--dry-run")
    kept = {k["task"]: k["reason"] for k in early["kept"]}
    assert "worktree still exists" in kept[merged] and "worktree still exists" in kept[unmerged]
    assert orch.run("cleanup", check=True).returncode == 0  # removes worktrees, deletes the merged branch
    unmerged_branch = orch.show(unmerged)["branch"]
    before = _files(orch)

    dry = _prune(orch, "--keep", "0", "--dry-run")
    assert {a["task"] for a in dry["archived"]} == {merged, never, merge_step}
    kept = {k["task"]: k["reason"] for k in dry["kept"]}
    assert f"its branch {unmerged_branch} is not merged into main" == kept[unmerged]
    assert _files(orch) == before and not (orch.repo / ".orchestra" / "archive").exists()
    text = orch.run("prune", "--keep", "0", "--dry-run", check=True).stdout
    assert f"would archive {merged}" in text and f"kept {unmerged}: its branch" in text

    real = _prune(orch, "--keep", "0")
    assert {a["task"] for a in real["archived"]} == {merged, never, merge_step}
    archive = Path(real["archive"])
    assert archive.parent == orch.repo / ".orchestra" / "archive" and archive.name.endswith(".jsonl.gz")
    assert _files(orch) == {unmerged}
    for tid in (merged, never, merge_step):
        assert not (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").exists()
        assert not (orch.repo / ".orchestra" / "logs" / f"{tid}.jsonl").exists()
    records = list(read_archive(archive))
    assert records[0]["kind"] == "archive" and records[0]["tasks"] == 3
    by_id = {r["id"]: r for r in records[1:]}
    assert by_id[merged]["task"]["state"] == "succeeded" and by_id[merged]["task"]["prompt"].startswith("merged work")
    assert "submitted" in [e["event"] for e in by_id[merged]["events"]]
    assert '"type":"result"' in by_id[merged]["transcript"].replace(" ", "")
    # The unmerged work is untouched, and everything still agrees.
    assert git(orch.repo, "rev-parse", "--verify", unmerged_branch)
    assert orch.state(unmerged) == "succeeded"
    listed = [t["id"] for t in json.loads(orch.run("list", "--json", check=True).stdout)]
    assert listed == [unmerged]
    assert sum(json.loads(orch.run("status", "--json", check=True).stdout)["counts"].values()) == 1
    assert_caches_agree(orch.repo)
    assert json.loads(orch.run("doctor", "--json").stdout)["findings"] == []
    assert _prune(orch, "--keep", "0")["archived"] == []
    # show and logs of a pruned id say where its record went, also from a prefix, also with the index gone.
    pruned = f"task {merged} was pruned: its record is in .orchestra/archive/{archive.name}"
    for args in (("show", merged), ("logs", merged), ("show", merged[:4])):
        gone = orch.run(*args)
        assert gone.returncode == 1 and pruned in gone.stderr, (args, gone.stderr)
    (archive.parent / "pruned.tsv").unlink()
    assert pruned in orch.run("show", merged).stderr
    assert orch.run("show", "zzzz9").stderr.strip() == "orchestra: error: no task zzzz9"


def test_prune_keeps_what_unfinished_work_needs(orch):
    done = orch.submit("done\n@fake write d.txt d\n@fake commit Add d")
    assert orch.work().returncode == 0
    assert orch.run("merge", done).returncode == 0
    orch.run("cleanup", check=True)
    waiting = orch.submit("builds on it", "--after", done)
    report = _prune(orch, "--keep", "0", "--dry-run")
    assert {k["task"]: k["reason"] for k in report["kept"]}[done] == "an unfinished task or running workflow needs it"
    assert done not in {a["task"] for a in report["archived"]}
    orch.run("cancel", waiting, check=True)
    assert done in {a["task"] for a in _prune(orch, "--keep", "0", "--dry-run")["archived"]}


def test_a_reply_to_a_task_whose_dependency_was_archived_since_runs(orch):
    """Its dependency had succeeded (it ran on it), and its work is safe; archived, it holds nothing up."""
    done = orch.submit("done\n@fake write d.txt d\n@fake commit Add d")
    after = orch.submit("builds on it\n@fake if-new write a.txt a\n@fake if-new commit Add a", "--after", done)
    assert orch.work().returncode == 0
    assert orch.run("merge", done).returncode == 0
    orch.run("cleanup", check=True)
    assert done in {a["task"] for a in _prune(orch, "--keep", "0")["archived"]}
    orch.run("respond", "--no-start", after, "Go on.\n@fake write b.txt b\n@fake commit Add b", check=True)
    assert orch.work().returncode == 0
    task = orch.show(after)
    assert task["state"] == "succeeded" and task["attempts"] == 2, task["error"]
    assert git(orch.repo, "show", f"{task['branch']}:b.txt") == "b"


@pytest.mark.parametrize("how", ["submit", "retry"])
def test_a_task_that_comes_to_need_one_being_archived_keeps_it(orch, monkeypatch, how):
    """prune chooses, writes its archive, then removes under the lock. A task submitted `--after` one of
    the chosen meanwhile, or a task that names it retried, changes nothing of it: it was removed all the
    same, and the task that needed it failed with 'dependency ... no longer exists'."""
    done = orch.submit("done\n@fake write d.txt d\n@fake commit Add d")
    cancelled = orch.submit("builds on it\n@fake write e.txt e\n@fake commit Add e", "--after", done)
    orch.run("cancel", cancelled, check=True)
    assert orch.work().returncode == 0
    assert orch.run("merge", done).returncode == 0
    orch.run("cleanup", check=True)
    ctx = Orchestra(orch.repo).ctx
    needs_it: list[str] = []
    write_archive = prune._write_archive

    def it_is_needed_meanwhile(*args):
        if how == "submit":
            sub = task_cases.Submission("builds on it\n@fake write e.txt e\n@fake commit Add e", after=[done])
            needs_it.append(task_cases.submit(ctx, sub).id)
        else:
            needs_it.append(task_cases.retry(ctx, cancelled).id)
        return write_archive(*args)

    monkeypatch.setattr(prune, "_write_archive", it_is_needed_meanwhile)
    report = prune.prune(ctx, keep=0)
    assert needs_it and done not in {a["task"] for a in report.archived}
    assert {k["task"]: k["reason"] for k in report.kept}[done] == "an unfinished task or running workflow needs it"
    assert orch.show(done)["state"] == "succeeded"
    assert orch.work().returncode == 0
    later = orch.show(needs_it[0])
    assert later["state"] == "succeeded", later["error"]
    assert git(orch.repo, "show", f"{later['branch']}:e.txt") == "e"
    assert_caches_agree(orch.repo)


def test_prune_keeps_the_tasks_of_a_workflow_a_person_can_still_retry(orch):
    """A workflow stopped at changes_requested (or failed) has not finished: a person may retry a step
    or cancel it. Pruning its tasks would turn it into 'failed: task ... no longer exists'."""
    changes = '{"verdict": "request_changes", "comments": [], "summary": "Not yet."}'
    (orch.repo / ".orchestra").mkdir(exist_ok=True)
    (orch.repo / ".orchestra" / "config.toml").write_text("revision_rounds = 0\n")
    request = f"Add a note\n@fake if-role reviewer structured {changes}\n"
    wf_id = orch.run("workflow", "start", "--no-start", "feature", request, check=True).stdout.strip()
    assert orch.work().returncode == 0
    assert json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)["state"] == "changes_requested"
    orch.run("cleanup", check=True)
    report = _prune(orch, "--keep", "0")
    assert report["archived"] == []
    kept = {k["task"]: k["reason"] for k in report["kept"]}
    assert kept and all(f"its workflow {wf_id} is changes_requested" in r for r in kept.values()), kept
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "changes_requested", wf
    # Once a person cancels it, its work is history like any other.
    orch.run("workflow", "cancel", wf_id, check=True)
    archived = {a["task"] for a in _prune(orch, "--keep", "0", "--dry-run")["archived"]}
    assert archived & set(kept)


def test_a_task_pruned_before_the_index_existed_is_still_found_after_the_next_prune(orch):
    """An archive made by an older orchestra (or before pruned.tsv was deleted) is not named in the index
    that the next prune starts: show must still read it, not say the task never existed."""
    ids = populate(orch.repo, 4, t0=NOON_UTC, spacing=DAY)
    orch.run("prune", "--keep", "2", check=True)
    index = orch.repo / ".orchestra" / "archive" / "pruned.tsv"
    index.unlink()  # as an older orchestra left it: an archive, no index
    orch.run("prune", "--keep", "0", check=True)  # this one writes the index again, naming only its own tasks
    assert index.read_text().count("\n") == 2
    for ref in (ids[0], ids[3], ids[0].upper()):
        gone = orch.run("show", ref)
        assert gone.returncode == 1 and f"task {ref.lower()} was pruned" in gone.stderr, (ref, gone.stderr)


def test_prune_by_date_and_by_count(orch):
    ids = populate(orch.repo, 12, t0=NOON_UTC, spacing=DAY)  # ended one a day from 2023-11-15
    report = _prune(orch, "--before", "2023-11-20", "--dry-run")
    assert [a["task"] for a in report["archived"]] == ids[:5]
    report = _prune(orch, "--keep", "4", "--dry-run")
    assert [a["task"] for a in report["archived"]] == ids[:8]
    report = _prune(orch, "--keep", "10", "--before", "2023-11-20")
    assert [a["task"] for a in report["archived"]] == ids[:2]
    assert _files(orch) == set(ids[2:])
    assert_caches_agree(orch.repo)
    for bad, words in (([], "--before DATE, --keep N"), (["--before", "last tuesday"], "invalid date")):
        proc = orch.run("prune", *bad)
        assert proc.returncode == 1 and words in proc.stderr


def test_a_crash_while_pruning_loses_nothing(orch):
    ids = populate(orch.repo, 20, t0=NOON_UTC, spacing=DAY)
    for tid in ids:
        (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").write_text('{"event":"submitted"}\n')
    orch.crash_at("between_remove_and_index", "prune", "--keep", "5", timeout=60)
    (archive,) = (orch.repo / ".orchestra" / "archive").glob("*.jsonl.gz")
    assert [r["id"] for r in list(read_archive(archive))[1:]] == ids[:15]  # written before anything was removed
    assert _files(orch) == set(ids[15:])
    report = json.loads(orch.run("status", "--json", check=True).stdout)  # the next command repairs
    assert sum(report["counts"].values()) == 5
    assert_caches_agree(orch.repo)
    assert sorted(p.stem for p in (orch.repo / ".orchestra" / "events").glob("*.jsonl")) == sorted(ids[15:])


@pytest.mark.parametrize("word", ["prune"])
def test_prune_is_not_offered_to_models(orch, word):
    """Pruning is a person's decision: the MCP server has no tool for it."""
    from orchestra.ui import mcp_server

    server = mcp_server.build_server(orch.repo)
    import anyio

    names = anyio.run(server.list_tools)
    assert not [t.name for t in names if word in t.name]
