"""Typed domain errors. Messages are written for the person who has to act on them.

``transient`` tells the job runner whether trying again later can help.
"""

from __future__ import annotations


class FerrodexError(Exception):
    """Base class for errors a user or operator can act on."""

    transient: bool = False
    code: str = "error"

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message


class InvalidInput(FerrodexError):
    code = "invalid_input"


class InvalidCrateName(InvalidInput):
    code = "invalid_crate_name"


class InvalidVersion(InvalidInput):
    code = "invalid_version"


class NotFound(FerrodexError):
    code = "not_found"


class CrateNotFound(NotFound):
    code = "crate_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class VersionYanked(NotFound):
    code = "version_yanked"


class NoDocumentation(NotFound):
    code = "no_documentation"


class ItemNotFound(NotFound):
    code = "item_not_found"


class UpstreamError(FerrodexError):
    """docs.rs or crates.io did not give a usable answer."""

    code = "upstream_error"
    transient = True


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class RateLimited(UpstreamError):
    code = "rate_limited"


class ArtifactError(FerrodexError):
    """The downloaded documentation cannot be used as it is."""

    code = "bad_artifact"


class CorruptArtifact(ArtifactError):
    code = "corrupt_artifact"


class ArtifactTooLarge(ArtifactError):
    code = "artifact_too_large"


class UnsafeArchive(ArtifactError):
    code = "unsafe_archive"


class UnsupportedFormat(ArtifactError):
    code = "unsupported_format"


class EmbeddingError(FerrodexError):
    code = "embedding_error"


class EmbeddingDimensionMismatch(EmbeddingError):
    code = "embedding_dimension_mismatch"


class EmbeddingModelMismatch(EmbeddingError):
    code = "embedding_model_mismatch"


class EmbeddingUnavailable(EmbeddingError):
    code = "embedding_unavailable"
    transient = True


class Cancelled(FerrodexError):
    """Raised inside the pipeline when the job was asked to stop."""

    code = "cancelled"


class UpstreamRejected(UpstreamError):
    """docs.rs or crates.io refused the request itself (4xx other than 404/429): trying again will not help."""

    code = "upstream_rejected"
    transient = False


class JobNotFound(NotFound):
    code = "job_not_found"


class JobStateError(FerrodexError):
    """The job is not in a state that allows the request (e.g. cancelling a finished job)."""

    code = "job_state"


class DatabaseUnavailable(FerrodexError):
    """PostgreSQL cannot be reached (stopped, restarting, out of connections): trying again shortly helps."""

    code = "database_unavailable"
    transient = True
    retry_after_seconds = 5


# SQLSTATEs of a server that is not taking work: connection exceptions (class 08), shutting down or
# restarting (57P01-57P03), too many connections (53300). A connection that never opened has none.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_UNDEFINED_TABLE = "42P01"


def database_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The ``DatabaseUnavailable`` to report for a database error that means the server is unreachable, else None.

    Django's ``OperationalError``/``InterfaceError`` also wrap errors of one statement (a deadlock, a
    cancelled query): those are not an outage and stay what they are.
    """
    from django.db import InterfaceError, OperationalError, ProgrammingError

    if isinstance(exc, ProgrammingError) and getattr(exc.__cause__, "sqlstate", None) == _UNDEFINED_TABLE:
        # The server answers but holds no Ferrodex tables: a client started before the first migrate.
        return DatabaseUnavailable(
            f"The database has no Ferrodex tables yet ({' '.join(str(exc).split())[:120]}): run "
            "'manage.py migrate' (scripts/up does it), then try again.",
            retry_after_s=DatabaseUnavailable.retry_after_seconds,
        )
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate and not sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return None
    reason = " ".join(str(exc).split())[:200]
    return DatabaseUnavailable(
        f"The database is unreachable right now ({reason}). It may be restarting: try again in a few seconds; "
        "if this persists, check that PostgreSQL is running (GET /api/v1/health reports it).",
        retry_after_s=DatabaseUnavailable.retry_after_seconds,
    )
