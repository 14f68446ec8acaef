"""The voxc family: the expressive stack voxc trains and compiles itself (presets tiny, light, base).

speaker_encoder (reference mel -> d-vector), emotion_encoder (reference mel -> style embedding, or
a label table), acoustic_encoder (phonemes + embeddings -> states, durations, pitch, energy),
length_regulator (frame axis from the host's frame_mask), acoustic_decoder (-> mel), vocoder
(HiFi-GAN or Vocos). This declaration is the one list of its graphs and the one dataflow.
"""
from voxc.models.family import ChainCheck, Family, Feed, Graph, GraphStep, HostStep, Lazy, Speaking, TrainedVoice
from voxc.models.voxc import flow
from voxc.models.voxc.presets import PRESETS

_P = "voxc.models.voxc."

FAMILY = Family(
    name="voxc",
    package="voxc.models.voxc",
    graphs=(
        Graph("speaker_encoder", Lazy(_P + "speaker_encoder:SpeakerEncoder"), Lazy(_P + "speaker_encoder:spec"),
              ("n_mels", "speaker_lstm_hidden", "speaker_lstm_layers", "speaker_dim"), ("batch", "ref_frames")),
        Graph("emotion_encoder", Lazy(_P + "emotion_encoder:build"), Lazy(_P + "emotion_encoder:spec"),
              ("n_mels", "emotion_channels", "emotion_dim", "n_styles", "emotion_mode"), ("batch", "ref_frames")),
        Graph("acoustic_encoder", Lazy(_P + "acoustic:AcousticEncoder"), Lazy(_P + "acoustic:encoder_spec"),
              ("n_symbols", "hidden", "heads", "ffn", "ffn_kernel", "encoder_layers", "predictor_channels",
               "speaker_dim", "emotion_dim"), ("batch", "phonemes")),
        Graph("length_regulator", Lazy(_P + "acoustic:build_regulator"), Lazy(_P + "acoustic:regulator_spec"),
              ("hidden",), ("batch", "phonemes", "frames")),
        Graph("acoustic_decoder", Lazy(_P + "acoustic:AcousticDecoder"), Lazy(_P + "acoustic:decoder_spec"),
              ("n_mels", "hidden", "heads", "ffn", "ffn_kernel", "decoder_layers", "postnet_channels",
               "postnet_layers"), ("batch", "frames")),
        Graph("vocoder", Lazy(_P + "vocoder:build"), Lazy(_P + "vocoder:spec"), ("n_mels", "hop", "vocoder"),
              ("batch", "frames")),
    ),
    steps=(
        HostStep("text", flow.text_ids, ("text",), ("phoneme_ids",)),
        HostStep("reference", flow.reference, ("reference_mel",), ("ref_mel", "style_ref_mel"), ("style_mel",)),
        HostStep("style_label", flow.style_label, ("style_id",), ("emotion_id",)),
        GraphStep("speaker_encoder", {"mel": "ref_mel"}),
        GraphStep("emotion_encoder", {"mel": "style_ref_mel"}),
        HostStep("phonemes", flow.phoneme_batch, ("phoneme_ids",), ("phonemes",)),
        GraphStep("acoustic_encoder", outputs={"durations": "predicted_durations"}),
        HostStep("frame_timing", flow.frame_timing, ("predicted_durations",), ("durations", "frame_mask", "frames"),
                 ("forced_durations", "speed")),
        GraphStep("length_regulator"),
        GraphStep("acoustic_decoder"),
        GraphStep("vocoder"),
    ),
    feeds={
        "speaker_encoder": Feed(flow.reference_feed, ("ref_mel", "style_ref_mel", "style_id")),
        "emotion_encoder": Feed(flow.reference_feed, ("ref_mel", "style_ref_mel", "style_id")),
        "acoustic_encoder": Feed(flow.phoneme_feed, ("phonemes", "reference_mel", "style_id"), aligned=True),
        "length_regulator": Feed(flow.regulator_feed, ("phonemes", "forced_durations", "reference_mel", "style_id"),
                                 aligned=True),
        "acoustic_decoder": Feed(flow.frames_feed, ("phonemes", "forced_durations", "reference_mel", "style_id"),
                                 aligned=True),
        "vocoder": Feed(flow.mel_feed, ("mel",)),
    },
    presets=PRESETS,
    default_preset="light",
    item_inputs=flow.item_inputs,
    item_length=flow.item_length,
    item_fits=flow.item_fits,
    host_config=("dims", "n_styles", "emotion_mode"),
    chain=ChainCheck(output="waveform", kind="waveform", forced=("forced_durations",),
                     durations="predicted_durations", frames="frames"),
    training={"speaker_encoder": ("speaker_encoder",), "emotion_encoder": ("emotion_encoder",),
              "acoustic": ("acoustic_encoder", "acoustic_decoder"), "vocoder": ("vocoder",)},
    voice=TrainedVoice(preset="light", package="voxc.voice", folder="weights", extras=("style_centroids",)),
    speaking=Speaking(inputs=flow.speak_inputs, voices=flow.voices, lengths=(("phoneme_ids", "phonemes"),),
                      cached={"speaker_embedding": ("speaker_ref",),
                              "emotion_embedding": ("style", "style_ref", "speaker_ref")},
                      options=("speaker_ref", "style", "style_ref", "speed"), speed=(0.25, 4.0),
                      instruct=flow.style_for_instructions),
)
