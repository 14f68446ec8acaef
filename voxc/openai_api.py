"""The OpenAI text-to-speech API as voxc speaks it: the request body, voice and model names.

voxc/server.py validates POST /v1/audio/speech bodies with `SpeechRequest` (strict types: a number
sent as a string, or `true` as a speed, is refused) and resolves what the request names to the
target's own voices here: OpenAI's voice names map to built-in voices (configurable), a request with
no voice speaks with the default voice, `instructions` go through the family's declared style control
(models/family.py Speaking.instruct), and `model` is one of OpenAI's TTS model names or a voice's.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voxc.core.errors import VoxcError

MAX_INPUT_CHARS = 4096
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceId(BaseModel):
    """OpenAI's custom-voice form: {"id": "..."}."""
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(min_length=1, max_length=128)


class SpeechRequest(BaseModel):
    """The body of POST /v1/audio/speech: OpenAI's fields, plus voxc's style/emotion and stream."""
    model_config = ConfigDict(extra="forbid", strict=True)
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    model: str | None = Field(default=None, max_length=128)
    voice: str | VoiceId | None = Field(default=None, max_length=128)
    instructions: str | None = Field(default=None, max_length=MAX_INPUT_CHARS)
    response_format: ResponseFormat = "mp3"
    speed: float = 1.0                      # the family's range is checked with its declaration
    stream_format: Literal["audio", "sse"] = "audio"
    stream: bool = True                     # voxc: false sends one body with its length (wav: exact sizes)
    style: str | None = Field(default=None, max_length=64)
    emotion: str | None = Field(default=None, max_length=64)

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


def voice_map(builtin: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """OpenAI voice name -> a built-in voice: the built-ins in turn, then the operator's overrides."""
    if not builtin:
        return {}
    unknown = sorted(v for v in overrides.values() if v not in builtin)
    if unknown:
        raise VoxcError(f"--voice-map names unknown voice(s) {', '.join(unknown)}: choose from "
                        f"{', '.join(builtin[:12])}{' ...' if len(builtin) > 12 else ''}")
    return {**{name: builtin[i % len(builtin)] for i, name in enumerate(OPENAI_VOICES)}, **overrides}


def parse_voice_map(text: str | None) -> dict[str, str]:
    """'alloy=speaker_a,echo=speaker_b' -> dict; a malformed item is a user's mistake."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, voice = item.partition("=")
        if not sep or not name.strip() or not voice.strip():
            raise VoxcError(f"--voice-map item '{item}' is not NAME=VOICE (e.g. alloy=speaker_a)")
        out[name.strip()] = voice.strip()
    return out


def resolve_voice(name: str | None, voices: dict, mapping: dict[str, str], default: str | None) -> str:
    """The built-in voice a request speaks with (404-worthy VoxcError when there is none by that name)."""
    if name is None:
        if default is None:
            raise VoxcError("this target has no built-in voice; pass one of GET /v1/voices")
        return default
    if name in voices:
        return name
    if name in mapping:
        return mapping[name]
    raise LookupError(f"unknown voice '{name}'; GET /v1/voices lists them")


def check_model(model: str | None, voices: dict) -> None:
    if model is not None and model not in OPENAI_MODELS and model not in voices and model != "voxc":
        raise LookupError(f"model '{model}' does not exist here; GET /v1/models lists them")


def models_list(voices: dict) -> dict:
    ids = ["voxc", *OPENAI_MODELS, *sorted(voices)]
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "voxc"} for i in ids]}
