"""Deterministic, seed-driven scores for the emulators: labels that match what is visible and audible.

A score has two parts. A *cue* part: a few cues a person would agree on (a smiling mouth, closed eyes, a
lively or a calm voice, friendly or abusive words; see ``hume_emulator.detectors``) raise the labels that
name them, through the fixed table :data:`CUE_LABELS` (the smiling astronaut reads Joy, Amusement,
Interest; a neutral face Calmness, Concentration; a calm voice Calmness, Boredom, Tiredness). A *base*
part: every label also gets a low score from a fixed random linear read-out of media features
(``sigmoid(W @ features + b)`` scaled to at most :data:`BASE_MAX`), so every label is present, the
numbers are shaped like Hume's (mostly small, a few high) and still move a little with the scene.

Same input and seed, same numbers; another seed gives other but equally stable numbers (the read-out and
a +-10 % jitter of each cue weight are drawn from it). The numbers are not a model of anyone's feelings.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Dict, Mapping, Sequence, Tuple

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
_INSULTS = frozenset(
    ("idiot", "idiots", "stupid", "dumb", "moron", "morons", "loser", "losers", "jerk", "fool", "fools",
     "pathetic", "useless", "worthless", "imbecile")
)  # fmt: skip
_PROFANITY = frozenset(("damn", "crap", "shit", "fuck", "fucking", "bastard", "bitch", "ass", "asshole"))
_TOXIC = _INSULTS | _PROFANITY
"""Abusive words: the only words that raise toxicity."""
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
    """Share of abusive words (insults and profanity), in [0, 1]."""
    tokens = words(text)
    return 0.0 if not tokens else sum(t in _TOXIC for t in tokens) / len(tokens)


TOXICITY_WEIGHTS: Mapping[str, Tuple[float, float]] = {
    "toxic": (0.9, 0.9),
    "severe_toxic": (0.3, 0.45),
    "obscene": (0.2, 0.85),
    "threat": (0.1, 0.05),
    "insult": (0.85, 0.35),
    "identity_hate": (0.05, 0.05),
}
"""Per toxicity category: how much (insults, profanity) raise it."""
TOXICITY_BASE_MAX = 0.01
"""Text without an abusive word stays below this in every category."""


def toxicity(text: str, categories: Sequence[str], seed: int) -> Tuple[float, ...]:
    """Scores for the toxicity ``categories``: near 0 unless ``text`` has insults or profanity."""
    tokens = words(text)
    n = max(1, len(tokens))
    insults = min(1.0, 3.0 * sum(t in _INSULTS for t in tokens) / n)
    profanity = min(1.0, 3.0 * sum(t in _PROFANITY for t in tokens) / n)
    base = read_out(len(categories), text_features(text), seed, "toxicity")
    out = []
    for name, b in zip(categories, base):
        w_insult, w_profanity = TOXICITY_WEIGHTS.get(name, (0.5, 0.5))
        out.append(max(w_insult * insults, w_profanity * profanity) + TOXICITY_BASE_MAX * b)
    return tuple(out)


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


# ------------------------------------------------------------------------------------------ cues

BASE_MAX = 0.3
"""Labels no cue names score below this (typically 0.01-0.1): low, stable and seeded."""
CUE_JITTER = 0.1
"""Each (seed, cue, label) weight is scaled by a fixed factor in [0.9, 1.1]: seeds differ, ranks hold."""

CUE_LABELS: Mapping[str, Mapping[str, float]] = {
    "smile": {
        "joy": 0.8, "amusement": 0.68, "interest": 0.5, "satisfaction": 0.38, "contentment": 0.34,
        "excitement": 0.2, "smile": 0.85, "grin": 0.6, "beaming": 0.5, "au12 lip corner puller": 0.8,
        "au6 cheek raise": 0.6, "au25 lips part": 0.45,
    },
    "neutral face": {
        "calmness": 0.62, "concentration": 0.55, "contemplation": 0.4, "interest": 0.22, "boredom": 0.15,
    },
    "eyes closed": {
        "tiredness": 0.75, "calmness": 0.4, "boredom": 0.32, "contemplation": 0.45, "entrancement": 0.25,
        "eyes closed": 0.8, "au43 eye closure": 0.8,
    },
    "lively voice": {
        "excitement": 0.72, "interest": 0.6, "joy": 0.42, "amusement": 0.3, "determination": 0.25,
        "eagerness": 0.58, "feeling uplifted": 0.5, "fast": 0.9, "clear": 0.85,
    },
    "calm voice": {
        "calmness": 0.7, "boredom": 0.48, "tiredness": 0.42, "contemplation": 0.35, "neutral": 0.65,
        "pondering": 0.45, "calm": 0.9, "monotone": 0.82,
    },
    "positive words": {
        "joy": 0.62, "enthusiasm": 0.5, "excitement": 0.42, "satisfaction": 0.38, "love": 0.3,
        "gratitude": 0.3, "admiration": 0.25,
    },
    "negative words": {"sadness": 0.5, "disappointment": 0.48, "annoyance": 0.42, "distress": 0.35},
    "abusive words": {"anger": 0.68, "contempt": 0.56, "disapproval": 0.52, "annoyance": 0.5, "disgust": 0.3},
    "question": {"interest": 0.4, "confusion": 0.36, "doubt": 0.25},
}  # fmt: skip
"""Cue -> {label (lower case, as v1 spells it; v0's labels are matched lower-cased): weight}.

A cue at full strength puts its labels near their weight; labels of several present cues combine as
independent chances (1 - product of misses), so nothing exceeds 1. v0 face, prosody, burst and language
labels, v0 FACS and descriptions, and v1's video / audio expressions and voice attributes all read from
this one table: a name that is not in a vocabulary is simply never asked for.
"""


@functools.lru_cache(maxsize=8192)
def _jitter(seed: int, cue: str, label: str) -> float:
    unit = (_stable_seed("cue", seed, cue, label) & 0xFFFF) / 0xFFFF
    return 1.0 + CUE_JITTER * (2.0 * unit - 1.0)


def cued_scores(
    labels: Sequence[str], features: Sequence[float], cues: Mapping[str, float], seed: int, salt: str
) -> Tuple[float, ...]:
    """Scores in [0, 1] for ``labels``: each label's base read-out, raised by the ``cues`` (in [0, 1])
    that name it in :data:`CUE_LABELS`."""
    base = read_out(len(labels), features, seed, salt)
    out = []
    for label, b in zip(labels, base):
        miss = 1.0 - BASE_MAX * b
        key = label.lower()
        for cue, strength in cues.items():
            weight = CUE_LABELS[cue].get(key)
            if weight is not None and strength > 0.0:
                miss *= 1.0 - min(1.0, weight * strength * _jitter(seed, cue, key))
        out.append(1.0 - miss)
    return tuple(out)


def face_cue_strengths(smile: float, eyes_open: float) -> Dict[str, float]:
    """The face cues of :data:`CUE_LABELS` from a smile and open eyes (each in [0, 1])."""
    return {"smile": smile, "neutral face": (1.0 - smile) * eyes_open, "eyes closed": 1.0 - eyes_open}


LIVELY_FROM, CALM_TO = 0.35, 0.65
"""Liveliness above 0.35 starts the lively cue (full at 0.75); below 0.65 the calm one (full at 0.25)."""


def voice_cue_strengths(liveliness: float) -> Dict[str, float]:
    """The voice cues of :data:`CUE_LABELS` from a liveliness in [0, 1] (0.5: an ordinary voice)."""
    return {
        "lively voice": min(1.0, max(0.0, (liveliness - LIVELY_FROM) / 0.4)),
        "calm voice": min(1.0, max(0.0, (CALM_TO - liveliness) / 0.4)),
    }


def text_cue_strengths(text: str) -> Dict[str, float]:
    """The word cues of :data:`CUE_LABELS`: lexical valence, abusive words, a question."""
    v = valence(text)
    return {
        "positive words": max(0.0, v),
        "negative words": max(0.0, -v),
        "abusive words": min(1.0, 3.0 * toxicity_level(text)),
        "question": 1.0 if "?" in text else 0.0,
    }
