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
