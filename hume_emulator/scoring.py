"""Deterministic, seed-driven scores read out of media features, for the emulators.

Each (seed, model, label set) gets a fixed random linear read-out: ``score = sigmoid(W @ features + b)``.
The same input and seed therefore always give the same numbers, a different seed gives a different but
equally stable "model", and because the scores are functions of the features (brightness, pitch,
words...) they move when the scene or the voice changes, which is what a dashboard needs to show.
The numbers mean nothing beyond that; they are shaped like Hume's (mostly small, a few high).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Sequence, Tuple

import numpy as np

_POSITIVE = frozenset(
    ("love", "loved", "lovely", "like", "liked", "great", "good", "happy", "glad", "joy", "fun", "funny",
     "amazing", "awesome", "wonderful", "beautiful", "nice", "thanks", "thank", "best", "excellent",
     "fantastic", "delighted", "pleased", "enjoy", "enjoyed")
)  # fmt: skip
_NEGATIVE = frozenset(
    ("hate", "hated", "bad", "sad", "angry", "awful", "terrible", "horrible", "worst", "ugly", "afraid",
     "scared", "sorry", "boring", "annoying", "disappointed", "upset", "cry", "pain", "hurt", "fear",
     "disgusting")
)  # fmt: skip
_TOXIC = frozenset(
    ("idiot", "stupid", "dumb", "moron", "loser", "shut", "kill", "die", "damn", "hell", "crap", "jerk",
     "fool")
)  # fmt: skip
WORD_PATTERN = re.compile(r"[\w']+")
"""A word: letters, digits and apostrophes (the language model's word granularity)."""


def _stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@functools.lru_cache(maxsize=64)
def _readout(seed: int, salt: str, n_labels: int, n_features: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_stable_seed(seed, salt, n_labels, n_features))
    weights = rng.normal(0.0, 1.2, size=(n_labels, n_features))
    bias = rng.normal(-2.2, 0.8, size=n_labels)
    return weights, bias


def read_out(n_labels: int, features: Sequence[float], seed: int, salt: str) -> Tuple[float, ...]:
    """``n_labels`` scores in (0, 1) from ``features`` (each roughly in [-1, 1]); fixed per seed and salt."""
    weights, bias = _readout(seed, salt, n_labels, len(features))
    logits = weights @ np.asarray(features, dtype=np.float64) + bias
    return tuple(float(v) for v in 1.0 / (1.0 + np.exp(-logits)))


def sentiment_distribution(valence: float, n_levels: int = 9) -> Tuple[float, ...]:
    """A distribution over levels 1..n peaking where ``valence`` in [-1, 1] points (0 = neutral, level 5)."""
    centre = (n_levels - 1) / 2.0 * (1.0 + max(-1.0, min(1.0, valence)))
    weights = [math.exp(-(((i - centre) / 1.5) ** 2)) for i in range(n_levels)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def words(text: str) -> Tuple[str, ...]:
    """Lower-cased words of ``text`` (letters, digits, apostrophes)."""
    return tuple(m.group(0).lower() for m in WORD_PATTERN.finditer(text))


def valence(text: str) -> float:
    """-1 (negative) .. 1 (positive) from a small lexicon; 0 when no word is in it."""
    tokens = words(text)
    pos = sum(t in _POSITIVE for t in tokens)
    neg = sum(t in _NEGATIVE or t in _TOXIC for t in tokens)
    return 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)


def toxicity_level(text: str) -> float:
    """Share of words from a small list of insults and profanity, in [0, 1]."""
    tokens = words(text)
    return 0.0 if not tokens else sum(t in _TOXIC for t in tokens) / len(tokens)


def text_features(text: str) -> Tuple[float, ...]:
    """Features of a span of text: lexical valence, emphasis, questions, capitals, length, word identity."""
    tokens = words(text)
    letters = [c for c in text if c.isalpha()]
    upper = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
    identity = _stable_seed("words", *tokens)
    return (
        valence(text),
        math.tanh(text.count("!") / 2.0),
        math.tanh(text.count("?") / 2.0),
        math.tanh(4.0 * upper - 1.0),
        math.tanh(len(tokens) / 10.0 - 0.5),
        math.tanh(toxicity_level(text) * 4.0),
        ((identity & 0xFFFF) / 0xFFFF) * 2.0 - 1.0,
        (((identity >> 16) & 0xFFFF) / 0xFFFF) * 2.0 - 1.0,
    )
