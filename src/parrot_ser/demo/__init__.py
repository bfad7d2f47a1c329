"""Synthetic acted-prosody demo corpus (synth) and the one-command offline demo (run)."""

from parrot_ser.demo.synth import EMOTIONS, SENTENCES, SPEAKERS, DemoCorpus, synthesize_corpus

__all__ = ["EMOTIONS", "SENTENCES", "SPEAKERS", "DemoCorpus", "synthesize_corpus"]
