"""Hugging Face attention PTMs (wav2vec2 / HuBERT / WavLM / UniSpeech-SAT / MMS / XLS-R / Whisper)."""

from __future__ import annotations

from parrot_ser.encoders.base import EncoderSpec

# name -> (default HF id, hidden size, transformer layers, description)
HF_MODELS: dict[str, tuple[str, int, int, str]] = {
    "hubert-base": ("facebook/hubert-base-ls960", 768, 12, "HuBERT base (LibriSpeech 960 h)"),
    "wav2vec2-base": ("facebook/wav2vec2-base", 768, 12, "wav2vec 2.0 base (LibriSpeech 960 h)"),
    "wavlm-base-plus": ("microsoft/wavlm-base-plus", 768, 12, "WavLM base+ (94k h)"),
    "wavlm-large": ("microsoft/wavlm-large", 1024, 24, "WavLM large (94k h)"),
    "unispeech-sat-base-plus": ("microsoft/unispeech-sat-base-plus", 768, 12, "UniSpeech-SAT base+"),
    "mms-300m": ("facebook/mms-300m", 1024, 24, "MMS 300M (multilingual wav2vec 2.0)"),
    "mms-1b": ("facebook/mms-1b", 1280, 48, "MMS 1B (multilingual wav2vec 2.0)"),
    "xls-r-300m": ("facebook/wav2vec2-xls-r-300m", 1024, 24, "XLS-R 300M (multilingual wav2vec 2.0)"),
    "whisper-base": ("openai/whisper-base", 512, 6, "Whisper base, encoder only"),
}


def specs() -> list[EncoderSpec]:
    return [EncoderSpec(name=n, family="hf", sample_rate=16000, hidden_size=h, num_layers=layers + 1,
                        frame_rate=50.0, pooled_dim=h, default_checkpoint=ckpt, kind="attention",
                        description=desc)
            for n, (ckpt, h, layers, desc) in HF_MODELS.items()]
