"""orchestra.store.fingerprints: the file through which readers mask secrets only the scheduler had."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from orchestra.core import redact
from orchestra.store import fingerprints
from orchestra.store.paths import Paths

TOKEN = "ghp_" + "Qw7xYz" * 6
ROTATED = "ghp_" + "Rr8uVw" * 6


@pytest.fixture(autouse=True)
def _keep_the_process_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_default", redact.Redactor())


def test_a_reader_with_only_the_fingerprint_file_masks_what_the_scheduler_ran_with(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    fingerprints.record(paths, [TOKEN])  # the scheduler, which has the variable
    on_disk = paths.fingerprints.read_text()
    assert TOKEN not in on_disk  # never the value itself
    assert stat.S_IMODE(paths.fingerprints.stat().st_mode) == 0o600
    assert redact.mask_secrets(f"echo {TOKEN}") == f"echo {TOKEN}"  # this process never saw it...
    fingerprints.install_for_reading(paths)  # ...until it reads the repository's fingerprints
    assert redact.mask_secrets(f"echo {TOKEN}") == "echo ***"
    assert redact.mask_data({"out": f"GITHUB_TOKEN={TOKEN}"}) == {"out": "GITHUB_TOKEN=***"}


def test_a_rotated_secret_is_added_and_the_old_one_stays_masked(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    fingerprints.record(paths, [TOKEN])
    first = paths.fingerprints.read_text()
    fingerprints.record(paths, [TOKEN])
    assert paths.fingerprints.read_text() == first  # nothing new: the file is left alone
    fingerprints.record(paths, [ROTATED])
    reader = fingerprints.install_for_reading(paths)
    assert reader.mask(f"{TOKEN} {ROTATED}") == "*** ***"


def test_a_repository_without_the_file_masks_its_own_environment_and_shapes(tmp_path: Path) -> None:
    reader = fingerprints.install_for_reading(Paths(tmp_path), [TOKEN])
    assert not Paths(tmp_path).fingerprints.exists()
    assert reader.mask(f"{TOKEN} sk-ant-api03-abcdefgh") == "*** sk-ant-***"
