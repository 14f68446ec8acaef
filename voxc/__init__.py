"""voxc: compile an expressive TTS stack into verified per-target artifacts."""
