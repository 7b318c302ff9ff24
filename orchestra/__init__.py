"""orchestra: a durable queue that runs Claude Code agents in git worktrees."""

__version__ = "0.1.0"
