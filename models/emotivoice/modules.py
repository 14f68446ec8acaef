"""The EmotiVoice family's graphs as PyTorch modules, written for export (EmotiVoice's PromptTTS + HiFi-GAN).

prompt_encoder: BERT (transformers) -> pooler output, for the emotion prompt and the content text.
acoustic_encoder: token embedding -> ESPnet-style Transformer (pre-LN, scaled positional encoding,
  Conv1d FFN) -> concat(speaker row, style, content) -> projection -> pitch / energy / duration
  predictors -> hidden + pitch and energy embeddings, integer durations.
length_regulator: Gaussian upsampling (delta 0.1) with the frame axis given by the host's frame_mask.
acoustic_decoder: the same Transformer -> to_mel: the 80-channel latent the vocoder reads.
vocoder: HiFi-GAN V1 (models/hifigan.py).
State-dict keys follow EmotiVoice's own (`am.` / `generator.` / `module.bert.` prefixes stripped on
import, models/emotivoice/checkpoint.py). No dropout or random op survives eval; no `.item()`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from voxc.models.spec import preset_dim

LN_EPS = 1e-12


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal positions [length, dim]: sin on even channels, cos on odd, base 10000 (not in the
    checkpoint: regenerated here)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class ScaledPositionalEncoding(nn.Module):
    """x + alpha * PE[:T] with a learnable scalar alpha (no sqrt(d) scaling of x)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("pe", sinusoid_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.pe[: x.shape[1]][None]


class MultiHeadedAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.d_k = heads, dim // heads
        self.linear_q, self.linear_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_v, self.linear_out = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (lin(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
                   for lin in (self.linear_q, self.linear_k, self.linear_v))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_k), dim=-1)
        return self.linear_out((att @ v).transpose(1, 2).reshape(b, t, self.heads * self.d_k))


class ConvFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int):
        super().__init__()
        self.w_1 = nn.Conv1d(dim, hidden, kernel, padding=(kernel - 1) // 2)
        self.w_2 = nn.Conv1d(hidden, dim, kernel, padding=(kernel - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(nn.functional.gelu(self.w_1(x.transpose(1, 2)))).transpose(1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, kernel: int):
        super().__init__()
        self.self_attn = MultiHeadedAttention(dim, heads)
        self.feed_forward = ConvFeedForward(dim, ffn, kernel)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class Transformer(nn.Module):
    """ESPnet's Transformer encoder as EmotiVoice configures it (embed.0 = scaled positional encoding)."""

    def __init__(self, dim: int, heads: int, layers: int, ffn: int, kernel: int, max_len: int):
        super().__init__()
        self.embed = nn.Sequential(ScaledPositionalEncoding(dim, max_len))
        self.encoders = nn.ModuleList(EncoderLayer(dim, heads, ffn, kernel) for _ in range(layers))
        self.after_norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for layer in self.encoders:
            x = layer(x)
        return self.after_norm(x)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of [B, C, T]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class VariancePredictor(nn.Module):
    """n x [Conv1d -> ReLU -> LayerNorm(channels) -> Dropout] -> Linear -> one value per token."""

    def __init__(self, dim: int, chans: int, layers: int, kernel: int):
        super().__init__()
        self.conv = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim if i == 0 else chans, chans, kernel, padding=(kernel - 1) // 2), nn.ReLU(),
                          ChannelNorm(chans, eps=LN_EPS), nn.Identity())
            for i in range(layers))
        self.linear = nn.Linear(chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        for block in self.conv:
            h = block(h)
        return self.linear(h.transpose(1, 2)).squeeze(-1)


class AcousticEncoder(nn.Module):
    """ids [B, P], speaker [B] (row of the speaker table), style and content [B, S] ->
    hidden [B, P, H] (with pitch and energy embeddings), log_durations, durations (int64), pitch, energy."""

    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden"]
        self.src_word_emb = nn.Embedding(cfg["n_tokens"], h)
        self.encoder = Transformer(h, cfg["encoder_heads"], cfg["encoder_layers"], cfg["ffn"], cfg["ffn_kernel"],
                                   preset_dim(cfg, "phonemes").max)
        self.spk_tokenizer = nn.Embedding(cfg["n_speakers"], cfg["speaker_dim"])
        self.embed_projection1 = nn.Linear(h + cfg["speaker_dim"] + 2 * cfg["bert_dim"], h)
        k, c = cfg["variance_kernel"], cfg["variance_chans"]
        self.pitch_predictor = VariancePredictor(h, c, cfg["pitch_layers"], k)
        self.energy_predictor = VariancePredictor(h, c, cfg["energy_layers"], k)
        self.duration_predictor = VariancePredictor(h, c, cfg["duration_layers"], cfg["duration_kernel"])
        e = cfg["variance_embed_kernel"]
        self.pitch_embed = nn.Sequential(nn.Conv1d(1, h, e, padding=(e - 1) // 2), nn.Identity())
        self.energy_embed = nn.Sequential(nn.Conv1d(1, h, e, padding=(e - 1) // 2), nn.Identity())

    def forward(self, ids, speaker, style, content):
        x = self.encoder(self.src_word_emb(ids))
        t = x.shape[1]
        cond = torch.cat([self.spk_tokenizer(speaker), style, content], dim=-1)[:, None, :]
        x = self.embed_projection1(torch.cat([x, cond.expand(-1, t, -1)], dim=-1))
        pitch = self.pitch_predictor(x)
        energy = self.energy_predictor(x)
        log_d = self.duration_predictor(x)
        durations = torch.clamp(torch.round(torch.exp(log_d) - 1.0), min=0).long()
        x = x + self.pitch_embed(pitch[:, None, :]).transpose(1, 2) + self.energy_embed(energy[:, None, :]).transpose(1, 2)
        return x, log_d, durations, pitch, energy


class GaussianUpsampler(nn.Module):
    """hidden [B, P, H], durations [B, P] (frames per token; float: the host may scale them by a speed
    factor), frame_mask [B, F] -> frame states [B, F, H]: softmax over tokens of -0.1 (t - c_n)^2,
    c = cumsum(d) - d / 2. A row of all-zero durations counts one frame per token (EmotiVoice's guard)."""

    def __init__(self, delta: float = 0.1):
        super().__init__()
        self.delta = delta

    def forward(self, hidden, durations, frame_mask):
        d = durations.float()
        empty = (d.sum(dim=1, keepdim=True) == 0).float()
        d = d + empty                                    # all-zero rows -> ones
        c = torch.cumsum(d, dim=1) - d / 2
        t = torch.cumsum(torch.ones_like(frame_mask), dim=1) - 1.0
        energy = -self.delta * (t[:, :, None] - c[:, None, :]) ** 2
        return torch.softmax(energy, dim=2) @ hidden * frame_mask[:, :, None]


class AcousticDecoder(nn.Module):
    """frame states [B, F, H] -> the 80-channel latent [B, 80, F] (channels first, as the vocoder reads it)."""

    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden"]
        self.decoder = Transformer(h, cfg["decoder_heads"], cfg["decoder_layers"], cfg["ffn"], cfg["ffn_kernel"],
                                   preset_dim(cfg, "frames").max)
        self.to_mel = nn.Linear(h, cfg["n_mels"])

    def forward(self, frame_states):
        return self.to_mel(self.decoder(frame_states)).transpose(1, 2)


class PromptEncoder(nn.Module):
    """input_ids [B, tokens] -> BERT pooler output [B, bert_dim] (tanh(W h_CLS + b))."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import BertConfig, BertModel
        self.bert = BertModel(BertConfig(**cfg["bert"]), add_pooling_layer=True)

    def forward(self, input_ids):
        # BertModel's own forward builds its masks with ops Core ML cannot convert (new_ones); one
        # unpadded sequence needs no mask, so the embeddings, encoder and pooler are called directly
        h = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        return self.bert.pooler(self.bert.encoder(h).last_hidden_state)


def build_upsampler(cfg: dict) -> GaussianUpsampler:
    return GaussianUpsampler()


def build_vocoder(cfg: dict):
    from voxc.models.hifigan import Generator
    return Generator(cfg["vocoder"], cfg["n_mels"])
