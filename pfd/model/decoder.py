"""Part-view decoder (docs/MODEL.md section 6): post-norm DETR decoder layers on nn.MultiheadAttention.

Parameter names follow the reference (`self_attn`, `multihead_attn`, `linear1`, `linear2`,
`norm1..3`, `layers.N`, final `norm`) so reference checkpoints load by a rename. Attention is
batch-first with need_weights=False, so PyTorch uses its fused scaled-dot-product kernels.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PartViewDecoderLayer", "PartViewDecoder"]


class PartViewDecoderLayer(nn.Module):
    """One post-norm layer: self-attention over views, cross-attention to the memory, feed-forward.

    `ffn_residual=False` is the reference implementation: t = norm3(f + dropout(f)) with
    f = FFN(t), i.e. no residual from the FFN input; True is the paper/DETR t = norm3(t + dropout(f)).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, ffn_residual: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MODEL.NUM_HEAD={num_heads} must divide the embedding width {dim}")
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)  # inside the feed-forward
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.ffn_residual = ffn_residual

    def forward(self, targets: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """targets t [B, Nq, D], memory [B, 1+N, D], query_pos Q [1 or B, Nq, D] -> [B, Nq, D]."""
        q = targets + query_pos
        t = self.norm1(targets + self.dropout1(self.self_attn(q, q, targets, need_weights=False)[0]))
        cross = self.multihead_attn(t + query_pos, memory, memory, need_weights=False)[0]
        t = self.norm2(t + self.dropout2(cross))
        f = self.linear2(self.dropout(F.relu(self.linear1(t))))
        return self.norm3((t if self.ffn_residual else f) + self.dropout3(f))


class PartViewDecoder(nn.Module):
    """`num_layers` copies of a layer, then a final LayerNorm: V = norm(layers(t = 0))."""

    def __init__(self, layer: PartViewDecoderLayer, num_layers: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, query_pos: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query_pos Q [Nq, D], memory [B, 1+N, D] -> views V [B, Nq, D]; targets start at zero."""
        query_pos = query_pos.unsqueeze(0)  # [1, Nq, D], broadcast over the batch
        t = memory.new_zeros(memory.shape[0], query_pos.shape[1], memory.shape[2])  # [B, Nq, D]
        for layer in self.layers:
            t = layer(t, memory, query_pos)
        return self.norm(t)
