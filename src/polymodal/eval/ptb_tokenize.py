"""Penn-Treebank tokenisation of captions, as the COCO caption evaluation reads them.

The COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) are defined on captions tokenised by
Stanford's PTBTokenizer with lower-casing, after which punctuation tokens are dropped. This module
does the same in pure Python, so that the metrics need no Java: contractions and possessives are
split (``don't`` -> ``do n't``, ``dog's`` -> ``dog 's``, ``cannot`` -> ``can not``), punctuation is
split from words (hyphens and periods inside a word or a number stay), brackets become ``-LRB-``
and friends, and British spellings are Americanised for the words the PTB tokenizer maps. A test
checks it token for token against the Java tokenizer on the shared caption sets.
"""

from __future__ import annotations

import re

# Tokens the COCO evaluation removes after tokenising (quotes, brackets, sentence punctuation).
PUNCTUATION = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                         ".", "?", "!", ",", ":", "-", "--", "...", ";"})

# Brackets become PTB escapes. The reference tokenizer lower-cases after escaping, so "(" comes out
# as "-lrb-", which is not in PUNCTUATION and stays: the metrics count it as a word.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}

# Abbreviations that keep their period (besides initials such as "U." and dotted ones like "a.m.").
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "jr", "sr", "st", "mt", "ft", "vs", "etc",
                            "inc", "co", "corp", "ltd", "prof", "gen", "sgt", "capt", "lt", "col"})

# Words split in two by the PTB conventions (the second part is a separate token).
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                "wanna": ("wan", "na"), "lemme": ("lem", "me"), "gimme": ("gim", "me")}

# Clitics split off the end of a word: n't first (so "don't" gives "do n't"), then 's 're ...
_NEGATION = re.compile(r"^(.+?)(n't)$", re.IGNORECASE)
_CLITIC = re.compile(r"^(.+?)('s|'re|'ve|'ll|'d|'m)$", re.IGNORECASE)

# A run of characters: a detached clitic ("'s"), a number with inner commas or colons, a word (letters, digits, inner hyphens, periods, apostrophes, ampersands),
# an ellipsis, a run of dashes, or any other single non-space character.
_PIECE = re.compile(r"(?i:'n'|'(?:s|re|ve|ll|d|m)\b)|\d+(?:[,:]\d+)+|\.\.\.|--+|[\w][\w'&.\-/]*|\S")


def _split_word(word: str) -> list[str]:
    """One word-like run -> its PTB tokens (trailing period, clitics, special words)."""
    tokens_after: list[str] = []
    # A word ends a sentence with its period unless the period is part of it ("a.m.", "3.5").
    while word.endswith(".") and not _keeps_period(word):
        tokens_after.insert(0, ".")
        word = word[:-1]
    while word.endswith(("-", "/")) and len(word) > 1:
        tokens_after.insert(0, word[-1])
        word = word[:-1]
    while word.endswith("'") and len(word) > 1:
        tokens_after.insert(0, "'")
        word = word[:-1]
    head: list[str] = []
    if word.lower() in _SPLIT_WORDS:
        head = list(_SPLIT_WORDS[word.lower()])
    else:
        match = _NEGATION.match(word) or _CLITIC.match(word)
        head = [match.group(1), match.group(2)] if match else [word]
    return head + tokens_after


def _keeps_period(word: str) -> bool:
    """True when a word's final period belongs to it: "Mr.", an initial "U.", or "a.m."-style."""
    stem = word[:-1]
    if stem.lower() in _ABBREVIATIONS or (len(stem) == 1 and stem.isupper()):
        return True
    return "." in stem and bool(re.fullmatch(r"(?:[A-Za-z]\.)+", word))


def tokenize(caption: str) -> list[str]:
    """A caption -> lower-cased PTB tokens, punctuation tokens removed, as COCO evaluation does."""
    tokens: list[str] = []
    # Case decides whether a period ends an initial ("U. Miami"), so lower-case after splitting.
    for piece in _PIECE.findall(caption):
        if piece[0] == "'" and len(piece) > 1:
            tokens.append(piece)
        elif piece[0].isalnum() or piece[0] == "_":
            tokens.extend(_split_word(piece))
        elif piece == '"':
            tokens.append("''")
        else:
            tokens.append(_BRACKETS.get(piece, piece))
    return [token.lower() for token in tokens if token not in PUNCTUATION]


def tokenize_all(captions: dict) -> dict:
    """``{key: [caption, ...]}`` -> ``{key: ["tok tok ...", ...]}``: the form the metrics read."""
    return {key: [" ".join(tokenize(text)) for text in texts] for key, texts in captions.items()}
