"""Embedding providers behind ``crates.pipeline.embed.Embedder``: local MiniLM, OpenAI-compatible, hashing."""

from crates.pipeline.embedders.hashing import HashEmbedder
from crates.pipeline.embedders.local import LocalEmbedder
from crates.pipeline.embedders.openai_compat import OpenAIEmbedder

__all__ = ["HashEmbedder", "LocalEmbedder", "OpenAIEmbedder"]
