"""Errors a person can act on.

Every failure that reaches a user is an OrchestraError whose message fits on one
line; the CLI prints it and exits non-zero, the MCP server turns it into a ToolError.
Anything else escaping the core is a bug and is reported as such.
"""

from __future__ import annotations

# Exit statuses of the `orchestra` command (documented in the man page).
EXIT_OK = 0
# A request orchestra understood and refused or could not do: an unknown task, a value it does
# not accept (a duration, a priority, a setting), a state that does not allow it, git saying no.
EXIT_FAILED = 1
# The command line itself is wrong, whatever the repository holds: an unknown option, a missing
# argument, options that contradict each other or go only with another, a required text given
# empty (it counts as missing). click's own errors, including its type checks, are these too.
EXIT_USAGE = 2
EXIT_AWAITING_INPUT = 3  # `wait`: an awaited task needs a person
EXIT_INTERNAL = 70  # a bug: reported in one line, never as a traceback
EXIT_INTERRUPTED = 130
EXIT_TIMEOUT = 124  # `wait --timeout` passed (the same code as timeout(1))


class OrchestraError(Exception):
    """A failure with a message meant for the person who caused or can fix it."""

    exit_code = 1


class NotARepository(OrchestraError):
    pass


class TaskNotFound(OrchestraError):
    pass


class CorruptTaskFile(OrchestraError):
    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"corrupt task file {path}: {reason}")
        self.path = path


class InvalidInput(OrchestraError):
    pass


class BadUsage(InvalidInput):
    """Input whose shape is wrong before any value is looked at (see EXIT_USAGE): the MCP server
    refuses it with the same words, the CLI exits 2 as for click's own usage errors."""

    exit_code = EXIT_USAGE


class Interrupted(OrchestraError):
    """Ctrl-C stopped a command that has settled what it was doing; the message says where things stand."""

    exit_code = EXIT_INTERRUPTED


class InvalidTransition(OrchestraError):
    pass


class ConfigError(OrchestraError):
    pass


class GitError(OrchestraError):
    pass


class SchedulerBusy(OrchestraError):
    pass


class StorageError(OrchestraError):
    """The file system refused a read or write of orchestra's state (full disk, permissions)."""
