"""The one error hierarchy of jatos-sync.

Every failure the program reports on purpose is a `JatosSyncError`; its `exit_code` is one
of the codes listed in README, "Exit codes". Third-party exceptions are translated into
these classes at the boundary that meets them (requests in `client.py`, YAML in
`config_reader.py`, OS errors in `scan.py`/`state.py`); only `jatos_sync.cli` turns them into a
message and an exit code.

Messages must be actionable by a researcher: what happened, to which file or study, and
what to do. They must never contain the token.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_SAFETY = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

# When several mappings end differently, the process exits with the most severe code.
# Configuration problems come first (nothing could be trusted), then access, then an
# unreachable server, then safety stops, then partial failures.
_SEVERITY = (EXIT_OK, EXIT_PARTIAL, EXIT_SAFETY, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_CONFIG)


def worst_exit_code(codes: list[int] | tuple[int, ...]) -> int:
    """The most severe of several exit codes (0 for none)."""
    worst = EXIT_OK
    for code in codes:
        if code == EXIT_INTERRUPTED:
            return code
        if _SEVERITY.index(code) > _SEVERITY.index(worst):
            worst = code
    return worst


class JatosSyncError(Exception):
    """Base class; the message is shown to the user as one paragraph."""

    exit_code = EXIT_PARTIAL


class ConfigError(JatosSyncError):
    """The configuration (file, token source, command line) is wrong."""

    exit_code = EXIT_CONFIG


class DefinitionError(ConfigError):
    """A study definition (in the configuration, a `.jas` or on the server) that JATOS would
    refuse or that cannot be read; the message says what and why."""


class ArchiveError(ConfigError):
    """A study archive (`.jzip`) that is not one, or holds an entry that would land outside
    its folder; nothing was unpacked."""


class UnsupportedServerError(JatosSyncError):
    """The server is not a JATOS, or a JATOS too old for the asset API (3.8.1)."""

    exit_code = EXIT_CONFIG


class StudyNotFoundError(JatosSyncError):
    """The configured study does not exist on the server."""

    exit_code = EXIT_CONFIG


class AuthError(JatosSyncError):
    """The token was refused (invalid, expired, deactivated) or the API is disabled."""

    exit_code = EXIT_AUTH


class AccessError(JatosSyncError):
    """The token owner may not access the study (not a member) or is redirected to a login."""

    exit_code = EXIT_AUTH


class StudyLockedError(AccessError):
    """The study is locked in JATOS; uploads and deletions are refused until it is unlocked."""


class StudyRefusedError(JatosSyncError):
    """JATOS refused a change of a study's properties or components (its validation); the
    message carries JATOS's reason."""

    exit_code = EXIT_CONFIG


class SafetyStop(JatosSyncError):
    """A data-safety guard refused to act (docs/safety.md)."""

    exit_code = EXIT_SAFETY


class ServerUnavailableError(JatosSyncError):
    """The server could not be reached, or kept failing after retries."""

    exit_code = EXIT_UNREACHABLE


class FileSyncError(JatosSyncError):
    """One file could not be synced; the rest of the pass goes on."""

    exit_code = EXIT_PARTIAL


class RequestTooLargeError(FileSyncError):
    """JATOS, or a proxy in front of it, refused a request body as too large (HTTP 413)."""


class UnsafePathError(FileSyncError):
    """A path (from the server, an archive or a state file) that is not a plain relative
    path, or a local path built from one that would lead outside its root
    (docs/safety.md, rule 10)."""


class LocalFileChangedError(FileSyncError):
    """A local file changed while it was being read for upload; it is tried again later."""


class RemoteFileMissingError(FileSyncError):
    """The file asked for is not (or no longer) on the server."""


class TransientFileError(FileSyncError):
    """A per-file failure that a later retry may cure (e.g. 5xx, a dropped connection)."""


class InternalError(JatosSyncError):
    """An unexpected exception (a bug), caught where it would otherwise end a command or a
    mapping silently (docs/safety.md, rule 13); the message starts with "internal error"."""

    exit_code = EXIT_PARTIAL

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        return cls(
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in jatos-sync; "
            "please report it with the log (run with -v for the traceback)."
        )
