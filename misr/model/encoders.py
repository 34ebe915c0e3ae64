"""Unimodal encoders: a padded sequence in, one d_model vector per clip out.

Every modality ends in the same `SequenceEncoder`: a linear projection to d_model, a few learnable
summary tokens prepended, a small Transformer encoder that ignores padding, and the mean of the
summary tokens as the clip's representation. The text side differs only in what feeds it:
  tokens  learned embeddings of the store's token ids (any tokenizer with a known vocabulary size);
  hidden  per-token hidden states of a frozen BERT-family encoder, stored by extraction;
  bert    a BERT-family encoder run on the token ids (the shipped MiniLM-L6 by default), frozen or
          fine-tuned.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn


class SequenceEncoder(nn.Module):
    def __init__(self, in_dim: int, d_model: int, n_heads: int, n_layers: int, n_summary: int, dropout: float, max_len: int = 4096):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        self.summary = nn.Parameter(torch.randn(n_summary, d_model) * 0.02)
        self.register_buffer("positions", _sinusoid(max_len, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        # nested tensors change the numerics with the padding pattern; keep results independent of it
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.n_summary = n_summary

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, in_dim], lengths [B] -> [B, d_model]. Padded frames never influence the result.

        A clip longer than the encoder's limit (model.max_frames) is uniformly subsampled to it.
        """
        if x.shape[1] > self.positions.shape[0]:
            x, lengths = uniform_subsample(x, lengths, self.positions.shape[0])
        b, t, _ = x.shape
        h = self.proj(x) + self.positions[:t]
        h = torch.cat([self.summary.expand(b, -1, -1), h], dim=1)
        pad = torch.arange(t, device=x.device)[None, :] >= lengths[:, None]
        pad = torch.cat([torch.zeros(b, self.n_summary, dtype=torch.bool, device=x.device), pad], dim=1)
        h = self.transformer(h, src_key_padding_mask=pad)
        return self.norm(h[:, : self.n_summary].mean(dim=1))


def uniform_subsample(x: torch.Tensor, lengths: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip longer than `limit` frames keeps `limit` of them, evenly spread over its whole length
    (frame floor(i * length / limit) for i < limit); a shorter clip keeps all of its frames."""
    steps = torch.arange(limit, device=x.device, dtype=torch.float64)
    scale = torch.clamp(lengths.to(torch.float64) / limit, min=1.0)
    index = torch.floor(steps[None, :] * scale[:, None]).long().clamp(max=x.shape[1] - 1)
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2])), torch.clamp(lengths, max=limit)


class TokenEncoder(nn.Module):
    """Learned token embeddings into a SequenceEncoder (for stores tokenised with a small vocabulary)."""

    def __init__(self, vocab_size: int, d_model: int, **kw):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.encoder = SequenceEncoder(d_model, d_model, **kw)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids), mask.sum(dim=1))


class HiddenStateEncoder(nn.Module):
    """Stored hidden states of a frozen BERT-family encoder into a SequenceEncoder."""

    def __init__(self, hidden_dim: int, d_model: int, **kw):
        super().__init__()
        self.encoder = SequenceEncoder(hidden_dim, d_model, **kw)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(hidden, mask.sum(dim=1))


class BertTextEncoder(nn.Module):
    """A BERT-family model run on token ids, then a SequenceEncoder over its last hidden states."""

    def __init__(self, model_dir: Path, finetune: bool, d_model: int, **kw):
        super().__init__()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self.finetune = finetune
        if not finetune:
            self.bert.requires_grad_(False)
            self.bert.eval()
        self.encoder = SequenceEncoder(self.bert.config.hidden_size, d_model, **kw)

    def train(self, mode: bool = True) -> BertTextEncoder:
        super().train(mode)
        if not self.finetune:
            self.bert.eval()  # a frozen encoder keeps its dropout off
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.encoder(hidden, mask.sum(dim=1))


def _sinusoid(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return table * 0.1
