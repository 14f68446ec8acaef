"""models/: what voxc compiles -- PyTorch modules of the TTS stack and one ModelSpec per exported graph."""
