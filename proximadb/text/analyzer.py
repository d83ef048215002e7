"""How text becomes terms for full-text search: one :class:`Analyzer`, used for documents and queries alike.

Steps, in order:

1. lowercase (``lowercase=True``; Python's ``str.lower``, Unicode-aware);
2. split into words: runs of two or more Unicode word characters (``(?u)\\b\\w\\w+\\b``: letters,
   digits and ``_`` of any script; one-character words are dropped);
3. drop stop words (``stopwords``: ``"english"`` for :data:`ENGLISH_STOP_WORDS`, a list of your own,
   or ``None`` to keep every word);
4. stem (``stemmer``: ``"english"`` or another Snowball language of PyStemmer, installed with
   ``pip install 'proximadb[text]'``; ``None`` keeps words as they are).

The settings are part of an index's definition: documents and queries must go through the same
analyzer, so a collection stores its analyzer's settings (:meth:`Analyzer.settings`) and a change
of analyzer is a rebuild. An unknown stemmer language or a bad setting raises ValidationError.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from proximadb.errors import ValidationError

WORD = re.compile(r"(?u)\b\w\w+\b")

# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions).
ENGLISH_STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())


class Analyzer:
    """Text in, terms out (see the module's documentation for the steps)."""

    def __init__(self, *, lowercase: bool = True, stopwords: str | Sequence[str] | None = "english",
                 stemmer: str | None = None) -> None:
        self.lowercase = bool(lowercase)
        if stopwords == "english":
            self._stop: frozenset[str] = ENGLISH_STOP_WORDS
            self._stop_setting: str | list[str] | None = "english"
        elif stopwords is None:
            self._stop = frozenset()
            self._stop_setting = None
        elif isinstance(stopwords, str):
            raise ValidationError(f"stopwords {stopwords!r}: use 'english', a list of words, or None")
        else:
            words = list(stopwords)
            if not all(isinstance(w, str) for w in words):
                raise ValidationError("stopwords: a list of strings")
            self._stop = frozenset(w.lower() if self.lowercase else w for w in words)
            self._stop_setting = sorted(self._stop)
        self.stemmer_language = stemmer
        self._stem: Any = None
        if stemmer is not None:
            try:
                import Stemmer  # PyStemmer: the 'text' extra
            except ImportError as exc:
                raise ValidationError(f"stemmer {stemmer!r} needs PyStemmer: pip install 'proximadb[text]'") from exc
            if stemmer not in Stemmer.algorithms():
                raise ValidationError(f"stemmer {stemmer!r}: use one of {', '.join(sorted(Stemmer.algorithms()))}")
            self._stem = Stemmer.Stemmer(stemmer)

    def settings(self) -> dict[str, Any]:
        """What an index records of its analyzer (the constructor's keyword arguments)."""
        return {"lowercase": self.lowercase, "stopwords": self._stop_setting, "stemmer": self.stemmer_language}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Analyzer:
        unknown = set(settings) - {"lowercase", "stopwords", "stemmer"}
        if unknown:
            raise ValidationError(f"analyzer: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(**settings)

    def terms(self, text: str) -> list[str]:
        """The terms of one text, in order, repeats kept."""
        if not isinstance(text, str):
            raise ValidationError(f"text to analyze must be a string, got {type(text).__name__}")
        if self.lowercase:
            text = text.lower()
        words = [w for w in WORD.findall(text) if w not in self._stop]
        return self._stem.stemWords(words) if self._stem is not None else words

    def terms_of(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.terms(t) for t in texts]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analyzer) and self.settings() == other.settings()

    def __hash__(self) -> int:
        return hash(repr(self.settings()))

    def __repr__(self) -> str:
        return f"Analyzer({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"
