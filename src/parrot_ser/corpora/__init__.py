"""SER corpora: scan an official layout into a :class:`Manifest`.

>>> from parrot_ser.corpora import scan_corpus, list_corpora
>>> man = scan_corpus("emodb", "/data/emodb")

One module per corpus registers a :class:`CorpusSpec` in ``CORPORA`` (corpora/registry.py); the
registry imports the corpus modules on first use."""

from parrot_ser.corpora.base import CANONICAL_LABELS, Manifest, Problem, Utterance
from parrot_ser.corpora.registry import CORPORA, CorpusSpec, list_corpora, register, scan_corpus
from parrot_ser.corpora.scanning import canonical_label

__all__ = [
    "CANONICAL_LABELS", "CORPORA", "CorpusSpec", "Manifest", "Problem", "Utterance", "canonical_label",
    "list_corpora", "register", "scan_corpus",
]
