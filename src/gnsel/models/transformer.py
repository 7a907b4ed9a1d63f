"""Small Transformer-encoder sequence classifier over integer tokens."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_min_int, dropout as make_dropout
from .registry import register_model


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings -> pre-LN encoder layers -> LayerNorm -> mean pool -> Linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 64,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_ff: int = 128,
        max_len: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for key, value, minimum in (("vocab_size", vocab_size, 1), ("d_model", d_model, 1),
                                    ("n_heads", n_heads, 1), ("n_layers", n_layers, 0),
                                    ("dim_ff", dim_ff, 1), ("max_len", max_len, 1)):
            check_min_int(key, value, minimum)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        make_dropout(dropout)  # validates the range
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.embed_dropout = make_dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=dim_ff, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = make_dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map integer tokens (B, T) with T <= max_len to logits (B, num_classes)."""
        if tokens.dim() != 2 or tokens.is_floating_point() or tokens.is_complex():
            raise ValueError(
                f"transformer expects integer tokens of shape (B, T), got "
                f"{tuple(tokens.shape)} {tokens.dtype}"
            )
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.max_len}")
        positions = torch.arange(t, device=tokens.device).unsqueeze(0)  # (1, T), broadcast over the batch
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        x = self.embed_dropout(x)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x).mean(dim=1)
        return self.head(self.dropout(x))


@register_model("transformer")
def transformer(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    vocab_size: int = 64,
    d_model: int = 64,
    n_heads: int = 4,
    n_layers: int = 2,
    dim_ff: int = 128,
    max_len: int = 64,
    dropout: float = 0.0,
) -> nn.Module:
    """Transformer-encoder classifier for LongTensor token sequences of shape (T,), mean pooled."""
    if len(input_shape) != 1:
        raise ValueError(f"model 'transformer' expects input_shape (T,), got {input_shape!r}")
    if input_shape[0] > max_len:
        raise ValueError(
            f"model 'transformer': sequence length {input_shape[0]} exceeds max_len {max_len}"
        )
    return TransformerClassifier(
        num_classes, vocab_size=vocab_size, d_model=d_model, n_heads=n_heads,
        n_layers=n_layers, dim_ff=dim_ff, max_len=max_len, dropout=dropout,
    )
