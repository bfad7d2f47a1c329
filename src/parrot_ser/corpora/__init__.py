"""SER corpora: scan an official layout into a :class:`Manifest`.

>>> from parrot_ser.corpora import scan_corpus, list_corpora
>>> man = scan_corpus("emodb", "/data/emodb")

One module per corpus registers a :class:`CorpusSpec` in ``CORPORA``."""

# Importing a module registers its corpus.
from parrot_ser.corpora import cremad, emodb, esd, generic, iemocap, mesd, ravdess, savee, tess  # noqa: F401
from parrot_ser.corpora.base import CANONICAL_LABELS, Manifest, Problem, Utterance
from parrot_ser.corpora.common import CORPORA, CorpusSpec, canonical_label, list_corpora, scan_corpus

__all__ = [
    "CANONICAL_LABELS", "CORPORA", "CorpusSpec", "Manifest", "Problem", "Utterance", "canonical_label",
    "list_corpora", "scan_corpus",
]
