"""Embeddings from an OpenAI-compatible ``POST /embeddings`` endpoint (OpenAI, vLLM, Ollama, LM Studio...).

Retries on 429/5xx/connection errors are the ``openai`` client's own (exponential backoff with jitter,
honouring Retry-After); once that budget is spent the error becomes ``EmbeddingUnavailable``, which
the job runner treats as transient. Token counts are an estimate: the server's tokenizer is unknown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from crates.errors import EmbeddingDimensionMismatch, EmbeddingError, EmbeddingUnavailable
from crates.pipeline.embedders.tokens import approx_token_count

logger = logging.getLogger(__name__)

PROBE_TEXT = "dimension probe"


class OpenAIEmbedder:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        dimension: int | None = None,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        send_dimensions: bool | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.base_url = (base_url if base_url is not None else settings.OPENAI_BASE_URL) or None
        self.api_key = api_key if api_key is not None else settings.OPENAI_API_KEY
        self.model_name = model or settings.EMBEDDING_MODEL
        self.dimension = dimension or settings.EMBEDDING_DIMENSION
        self.batch_size = batch_size or settings.EMBEDDING_BATCH_SIZE
        self.max_tokens = max_tokens or settings.EMBEDDING_MAX_TOKENS
        self.send_dimensions = (
            send_dimensions if send_dimensions is not None else getattr(settings, "OPENAI_SEND_DIMENSIONS", False)
        )
        self.max_retries = max_retries if max_retries is not None else getattr(settings, "OPENAI_MAX_RETRIES", 5)
        self.timeout = timeout or getattr(settings, "OPENAI_TIMEOUT", 60.0)
        self._client: Any = None
        self._verified = False

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.model_name}, dim={self.dimension}, base_url={self.base_url or 'api.openai.com'})"

    counts_additively = True  # approx_token_count

    def count_tokens(self, text: str) -> int:
        return approx_token_count(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed_batch(list(texts[start : start + self.batch_size])))
        return vectors

    def verify_dimension(self) -> None:
        """One tiny request, once per process, so a wrong dimension fails before any real work."""
        if not self._verified:
            self._embed_batch([PROBE_TEXT])
            self._verified = True

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        import openai

        params: dict[str, Any] = {
            "model": self.model_name,
            # Servers reject empty input; a space embeds as "nothing" just as well.
            "input": [text if text.strip() else " " for text in batch],
            # Explicit: the client would ask for base64, which not every compatible server speaks.
            "encoding_format": "float",
        }
        if self.send_dimensions:
            params["dimensions"] = self.dimension
        try:
            response = self._get_client().embeddings.create(**params)
        except openai.RateLimitError as exc:
            raise EmbeddingUnavailable(
                f"The embedding server {self._where()} kept answering 429 Too Many Requests after "
                f"{self.max_retries} retries; try again later or lower EMBEDDING_BATCH_SIZE.",
                status=429,
            ) from exc
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            raise EmbeddingUnavailable(
                f"The embedding server {self._where()} is unavailable after {self.max_retries} retries: {exc}"
            ) from exc
        except openai.AuthenticationError as exc:
            raise EmbeddingError(
                f"The embedding server {self._where()} refused the API key (401); check OPENAI_API_KEY."
            ) from exc
        except openai.NotFoundError as exc:
            raise EmbeddingError(
                f"The embedding server {self._where()} does not know model {self.model_name!r} or has no "
                f"/embeddings endpoint (404); check EMBEDDING_MODEL and OPENAI_BASE_URL."
            ) from exc
        except openai.APIStatusError as exc:
            hint = (
                " (does the model accept `dimensions`? try OPENAI_SEND_DIMENSIONS=false)"
                if self.send_dimensions
                else ""
            )
            raise EmbeddingError(
                f"The embedding server {self._where()} rejected the request with {exc.status_code}: {exc.message}{hint}"
            ) from exc
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"Embedding request to {self._where()} failed: {exc}") from exc
        return self._vectors(response, expected=len(batch))

    def _vectors(self, response: Any, *, expected: int) -> list[list[float]]:
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != expected:
            raise EmbeddingError(
                f"The embedding server {self._where()} returned {len(data)} vectors for {expected} texts."
            )
        vectors = []
        for item in data:
            vector = [float(x) for x in item.embedding]
            if len(vector) != self.dimension:
                raise EmbeddingDimensionMismatch(
                    f"Model {self.model_name!r} at {self._where()} returns {len(vector)}-dimensional vectors but "
                    f"EMBEDDING_DIMENSION is {self.dimension}. Set EMBEDDING_DIMENSION={len(vector)} with a fresh "
                    f"database, or, if the model can shorten its vectors, set OPENAI_SEND_DIMENSIONS=true.",
                    expected=self.dimension,
                    actual=len(vector),
                )
            vectors.append(_normalised(vector))
        return vectors

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            if not self.api_key and not self.base_url:
                raise EmbeddingError("EMBEDDING_PROVIDER is openai but OPENAI_API_KEY is not set.")
            self._client = openai.OpenAI(
                # Self-hosted compatible servers often need no key, but the client insists on one.
                api_key=self.api_key or "unused",
                base_url=self.base_url,
                max_retries=self.max_retries,
                timeout=self.timeout,
            )
        return self._client

    def _where(self) -> str:
        return self.base_url or "api.openai.com"


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingError("The embedding server returned a zero or non-finite vector.")
    if abs(norm - 1.0) < 1e-6:
        return vector
    return [x / norm for x in vector]
