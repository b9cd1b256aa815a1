"""The MiniLM (BERT) encoder of the bundled sentence-transformers model, in plain torch.

It computes what sentence-transformers does for this model (BERT, mean pooling over the attention mask,
L2 normalisation) from the same weights (model.safetensors) and the same tokenizer (tokenizer.json). Importing
sentence-transformers pulls in transformers, most of a process's model load, which a search arriving right
after start-up would wait for; torch, tokenizers and safetensors alone load much faster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class MiniLMEncoder:
    """``encode(texts)`` -> unit vectors (a float32 tensor, one row per text, in order)."""

    def __init__(self, model_dir: Path, *, max_seq_length: int) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{model_dir} is not a BERT model with GELU activations")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dimension = int(config["hidden_size"])
        self.w: dict[str, Any] = load_file(str(model_dir / "model.safetensors"))
        self.max_seq_length = max_seq_length
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)), pad_token="[PAD]")
        self._torch = torch

    def encode(self, texts: Sequence[str]):
        torch = self._torch
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        types = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.float32)
        with torch.inference_mode():
            hidden = self._forward(ids, types, mask)
            summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
            pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def _forward(self, ids, types, mask):
        torch, w = self._torch, self.w
        functional = torch.nn.functional
        length = ids.shape[1]
        positions = torch.arange(length, dtype=torch.long).unsqueeze(0)
        x = (functional.embedding(ids, w["embeddings.word_embeddings.weight"])
             + functional.embedding(positions, w["embeddings.position_embeddings.weight"])
             + functional.embedding(types, w["embeddings.token_type_embeddings.weight"]))
        x = self._norm(x, "embeddings.LayerNorm")
        # Padding positions take no attention: a large negative bias before the softmax.
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        batch, heads = ids.shape[0], self.heads
        size = self.dimension // heads
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def split(t):
                return t.view(batch, length, heads, size).transpose(1, 2)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            context = functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            context = context.transpose(1, 2).reshape(batch, length, self.dimension)
            x = self._norm(x + self._linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = functional.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def _linear(self, x, name: str):
        return self._torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _norm(self, x, name: str):
        return self._torch.nn.functional.layer_norm(
            x, (self.dimension,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps
        )
