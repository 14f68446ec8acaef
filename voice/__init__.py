"""The reference voice: training (voice.train), losses (voice.losses), quality report (voice.quality),
PyTorch synthesis (voice.synth) and the committed trained light-preset weights (voice/weights/)."""
