"""The emotivoice family: EmotiVoice voices (PromptTTS acoustic model + HiFi-GAN V1 + SimBERT prompt
encoder) imported from the checkpoints their users already have (models/emotivoice/checkpoint.py).

prompt_encoder (BERT -> pooler output; run for the emotion prompt and for the content text),
acoustic_encoder (tokens, speaker row, style, content -> states, durations, pitch, energy),
length_regulator (Gaussian upsampling, frame axis from the host, speed factor alpha),
acoustic_decoder (-> the 80-channel latent), vocoder (HiFi-GAN V1, weight norm folded).
"""
from voxc.models.emotivoice import flow
from voxc.models.emotivoice.presets import presets
from voxc.models.family import ChainCheck, Family, Feed, Graph, GraphStep, HostStep, Lazy, Speaking

_M, _S = "voxc.models.emotivoice.modules:", "voxc.models.emotivoice.specs:"
_AM = ("hidden", "n_tokens", "n_speakers", "speaker_dim", "bert_dim", "encoder_heads", "encoder_layers", "ffn",
       "ffn_kernel", "variance_chans", "variance_kernel", "pitch_layers", "energy_layers", "duration_layers",
       "duration_kernel", "variance_embed_kernel")
_PHONEME_FEED = ("ids", "text", "prompt", "speaker_name")

FAMILY = Family(
    name="emotivoice",
    package="voxc.models.emotivoice",
    graphs=(
        Graph("prompt_encoder", Lazy(_M + "PromptEncoder"), Lazy(_S + "prompt_spec"), ("bert", "bert_dim"),
              ("batch", "tokens")),
        Graph("acoustic_encoder", Lazy(_M + "AcousticEncoder"), Lazy(_S + "encoder_spec"), _AM, ("batch", "phonemes")),
        Graph("length_regulator", Lazy(_M + "build_upsampler"), Lazy(_S + "regulator_spec"), ("hidden",),
              ("batch", "phonemes", "frames")),
        Graph("acoustic_decoder", Lazy(_M + "AcousticDecoder"), Lazy(_S + "decoder_spec"),
              ("hidden", "decoder_heads", "decoder_layers", "ffn", "ffn_kernel", "n_mels"), ("batch", "frames")),
        # a HiFi-GAN: its own ONNX Runtime int8 settings (every Conv/ConvTranspose, the first and last float,
        # then the one-shot ranking's mixed-precision search) rather than the profile's tuning for a Vocos
        Graph("vocoder", Lazy(_M + "build_vocoder"), Lazy(_S + "vocoder_spec"), ("n_mels", "hop", "vocoder"),
              ("batch", "frames"),
              quantisation={"onnxruntime": {"op_types": "auto", "keep_fp32": ["conv_pre.", "conv_post."],
                                            "sensitivity_layers": 0, "search": {"ranking_items": 4}}}),
    ),
    steps=(
        HostStep("g2p", flow.g2p_step, ("text",), ("ids",)),
        HostStep("prompt_tokens", flow.prompt_tokens, ("prompt",), ("prompt_ids",)),
        HostStep("content_tokens", flow.content_tokens, ("text",), ("content_ids",)),
        GraphStep("prompt_encoder", {"input_ids": "prompt_ids"}, {"pooler_output": "style"}, label="style_encoder"),
        GraphStep("prompt_encoder", {"input_ids": "content_ids"}, {"pooler_output": "content"}, label="content_encoder"),
        HostStep("speaker", flow.speaker_row, ("speaker_name",), ("speaker",)),
        GraphStep("acoustic_encoder", outputs={"durations": "predicted_durations"}),
        HostStep("frame_timing", flow.frame_timing, ("predicted_durations",), ("durations", "frame_mask", "frames"),
                 ("forced_durations", "alpha", "target_frames")),
        GraphStep("length_regulator"),
        GraphStep("acoustic_decoder"),
        GraphStep("vocoder"),
    ),
    feeds={
        "prompt_encoder": Feed(flow.prompt_feed, ("prompt_ids",)),
        "acoustic_encoder": Feed(flow.phoneme_feed, _PHONEME_FEED),
        "length_regulator": Feed(flow.phoneme_feed, _PHONEME_FEED),
        "acoustic_decoder": Feed(flow.frames_feed, _PHONEME_FEED + ("target_frames",)),
        "vocoder": Feed(flow.frames_feed, _PHONEME_FEED + ("target_frames",)),
    },
    presets=presets(),
    default_preset="released",
    item_inputs=flow.item_inputs,
    item_length=flow.item_length,
    item_fits=flow.item_fits,
    host_config=("dims", "tokens", "bert_vocab", "speakers", "n_speakers", "lexicon"),
    chain=ChainCheck(output="waveform", kind="waveform", durations="predicted_durations", frames="frames",
                     pin={"forced_durations": "predicted_durations"}),
    importer=Lazy("voxc.models.emotivoice.checkpoint:import_voice"),
    data=Lazy("voxc.models.emotivoice.flow:load_set"),
    data_hash=Lazy("voxc.models.emotivoice.flow:set_hash"),
    speaking=Speaking(inputs=flow.speak_inputs, voices=flow.voices,
                      lengths=(("ids", "phonemes"), ("content_ids", "tokens")),
                      cached={"style": ("style",)}, options=("speaker", "style", "speed"), speed=(0.25, 4.0),
                      instruct=flow.style_for_instructions),
)
