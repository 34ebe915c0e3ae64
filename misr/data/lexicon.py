"""A graded English sentiment lexicon for synthetic transcripts (`misr synth`, the demo corpus).

Grades are on the MOSI scale [-3, 3]. "not" before a graded word flips its polarity, so a transcript
is not a bag of words: a model has to read word order to get the sentiment right.
"""

from __future__ import annotations

import numpy as np

GRADED: dict[str, float] = {
    "horrible": -3.0, "awful": -3.0, "terrible": -2.8, "hate": -2.6, "disgusting": -2.6,
    "worst": -2.5, "miserable": -2.3, "bad": -2.0, "boring": -1.8, "annoying": -1.8,
    "disappointing": -1.6, "weak": -1.3, "dull": -1.2, "poor": -1.4, "meh": -0.7,
    "mediocre": -0.8, "odd": -0.4, "fine": 0.5, "decent": 0.8, "okay": 0.3,
    "nice": 1.2, "pleasant": 1.3, "good": 1.6, "enjoyable": 1.8, "fun": 1.9,
    "great": 2.3, "love": 2.5, "wonderful": 2.6, "excellent": 2.7, "amazing": 2.8,
    "fantastic": 2.9, "brilliant": 3.0,
}
FILLER = (
    "the movie film story it was and i this a of plot actor actors scene scenes really just "
    "very so quite kind thing part end that with about his her they we think felt saw lot"
).split()
NEGATOR = "not"
SPECIAL = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")

# id 0 is padding, as in BERT vocabularies; the rest is fixed so every synth store shares it.
VOCAB: tuple[str, ...] = SPECIAL + (NEGATOR,) + tuple(FILLER) + tuple(GRADED)
TOKEN_ID = {w: i for i, w in enumerate(VOCAB)}
_WORDS = np.array(list(GRADED))
_GRADES = np.array(list(GRADED.values()))


def transcript(sentiment: float, n_words: int, rng: np.random.Generator, sentiment_share: float = 0.45,
               negation_share: float = 0.2, spread: float = 0.5) -> list[str]:
    """Words that express `sentiment`: graded words near it (some as "not" + an opposite word) among fillers."""
    words: list[str] = []
    while len(words) < n_words:
        if rng.random() >= sentiment_share:
            words.append(FILLER[rng.integers(len(FILLER))])
            continue
        target = sentiment + spread * rng.standard_normal()
        negate = rng.random() < negation_share and len(words) + 2 <= n_words
        if negate:
            target = -target
        weights = np.exp(-((_GRADES - target) ** 2) / (2 * spread**2))
        word = str(_WORDS[rng.choice(len(_WORDS), p=weights / weights.sum())])
        words.extend([NEGATOR, word] if negate else [word])
    return words


def token_ids(words: list[str]) -> list[int]:
    return [TOKEN_ID["[CLS]"], *(TOKEN_ID.get(w, TOKEN_ID["[UNK]"]) for w in words), TOKEN_ID["[SEP]"]]
