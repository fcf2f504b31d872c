"""One error family. Each error carries a one-line message a user can act on."""

from __future__ import annotations


class CopilotError(Exception):
    """An error the user can fix. `str(err)` is the whole message; `hint` says what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(CopilotError):
    exit_code = 2


class UsageError(CopilotError):
    exit_code = 2


class OllamaUnavailable(CopilotError):
    exit_code = 3


class ModelMissing(CopilotError):
    exit_code = 4


class ModelError(CopilotError):
    exit_code = 5


class SearchFailed(CopilotError):
    exit_code = 6


class NoSources(CopilotError):
    exit_code = 7


class FetchBlocked(CopilotError):
    """A URL the fetcher refuses to read (scheme or address not allowed)."""


class EmbedderError(CopilotError):
    """The embedding model cannot be found, fetched or run."""


class EmbedderMismatch(EmbedderError):
    """The index was built with another embedder than the one configured now."""


class IndexLocked(CopilotError):
    """Another process is writing the local index (one writer at a time)."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class IndexUnavailable(CopilotError):
    """The local index cannot be opened: a Chroma server that does not answer, a damaged folder."""

    exit_code = 8


class IndexDamaged(IndexUnavailable):
    """The index's files cannot be read as an index: damaged, or made by another version.
    Nothing is changed; `copilot index --rebuild` sets them aside (renamed, never deleted)."""


class IndexWriteFailed(CopilotError):
    """Writing the index failed part-way (a full disk, a read-only folder): what was finished is
    kept and the next `copilot index` finishes the rest."""

    exit_code = 74  # EX_IOERR
