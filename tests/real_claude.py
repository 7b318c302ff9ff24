"""What every test that drives the real Claude Code CLI needs: the local Messages-API stub
(fixtures/messages_stub.py, loaded once per process) and the CLI itself, or a skip that says why."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB_PATH = ROOT / "fixtures" / "messages_stub.py"


def messages_stub() -> ModuleType:
    """fixtures/messages_stub.py as a module (it is a script, not a package member)."""
    name = "orchestra_test_messages_stub"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STUB_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def claude_or_skip(*, needs: tuple[str, ...] = (), why: str = "") -> str:
    """The real `claude` binary; a skip with the reason when it or one of `needs` (tools on PATH) is
    missing, a failure when it is configured but broken."""
    ms = messages_stub()
    try:
        binary, reason = ms.locate_claude()
    except ms.ClaudeMisconfigured as e:
        pytest.fail(str(e))
    if binary is None:
        pytest.skip(reason)
    missing = [tool for tool in needs if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{why or 'these tests need'} {' and '.join(missing)}, not installed here")
    return binary
