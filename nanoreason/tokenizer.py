"""Our own byte-level BPE, trained on our task's text and served by tiktoken.

tiktoken's `get_encoding("gpt2")` downloads its rank file, so we train the ranks ourselves (a few seconds) and hand
them to `tiktoken.Encoding`, which does the fast encoding/decoding. The trainer below is the whole algorithm:

  1. pre-split text with a regex (GPT-4's pattern, except that every digit is its own chunk, so "128" is "1","2","8"
     and arithmetic stays learnable digit by digit; letters of a word may merge into one token). `numbers="whole"`
     keeps a number in one chunk instead, so BPE may merge the frequent ones ("23" one token, "137" two): then
     18+5=23 is one decision, not a carry over two digits;
  2. start from the 256 single bytes (so any Unicode text can be encoded and round-trips);
  3. repeatedly merge the most frequent adjacent pair of tokens inside chunks into a new token, until `vocab_size`.

Special tokens (end-of-text first) get ids after the merges. One small JSON file holds everything.
"""
from __future__ import annotations

import json
from collections import Counter

import regex
import tiktoken

from nanoreason.config import ConfigError

# GPT-4 (cl100k) split pattern with \p{N}{1,3} replaced by \p{N}: every digit its own chunk.
PAT_STR = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
PATTERNS = {"digits": PAT_STR, "whole": PAT_STR.replace(r"|\p{N}|", r"|\p{N}+|")}   # how numbers are split
EOT = "<|endoftext|>"
# End-of-text ends every sample and pads batches; the two reward tags serve return-conditioned RL.
SPECIALS = (EOT, "<|correct|>", "<|incorrect|>")


def train_bpe(text: str, vocab_size: int, pat_str: str = PAT_STR) -> list[bytes]:
    """Byte-level BPE: the token byte-strings in rank order (the first 256 are the single bytes)."""
    if vocab_size < 256:
        raise ConfigError(f"vocab_size must be >= 256 (one token per byte), got {vocab_size}")
    chunks = Counter(regex.findall(pat_str, text))                       # dedupe chunks, keep their counts
    words = {tuple(bytes([b]) for b in c.encode("utf-8")): n for c, n in chunks.items()}
    tokens = [bytes([i]) for i in range(256)]
    while len(tokens) < vocab_size:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += n
        if not pairs:
            break                                                          # every chunk is a single token already
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))      # most frequent, ties broken by bytes
        tokens.append(a + b)
        words = {_merge(w, a, b): n for w, n in words.items()}
    return tokens


def _merge(word: tuple, a: bytes, b: bytes) -> tuple:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class Tokenizer:
    """A `tiktoken.Encoding` with our ranks, plus save/load. `encode` treats special-token text as plain text."""

    def __init__(self, tokens: list[bytes], specials=SPECIALS, pat_str: str = PAT_STR):
        if len(tokens) < 256 or set(tokens[:256]) != {bytes([i]) for i in range(256)}:
            raise ConfigError("tokenizer ranks must start with all 256 single bytes")
        self.tokens, self.pat_str = list(tokens), pat_str
        self.special_ids = {s: len(tokens) + i for i, s in enumerate(specials)}
        self.enc = tiktoken.Encoding("nanoreason", pat_str=pat_str,
                                     mergeable_ranks={t: i for i, t in enumerate(self.tokens)},
                                     special_tokens=self.special_ids)
        self.eot_id = self.special_ids[EOT]

    @classmethod
    def train(cls, text: str, vocab_size: int = 512, numbers: str = "digits") -> "Tokenizer":
        """`vocab_size` counts the BPE tokens; the special tokens come on top (see `n_vocab`). `numbers`: "digits"
        (every digit a token) or "whole" (a number's digits may merge)."""
        if numbers not in PATTERNS:
            raise ConfigError(f"numbers must be one of {sorted(PATTERNS)}, got {numbers!r}")
        return cls(train_bpe(text, vocab_size, PATTERNS[numbers]), pat_str=PATTERNS[numbers])

    @property
    def n_vocab(self) -> int:
        return self.enc.n_vocab

    def line_end_ids(self) -> list[int]:
        """The ids of the tokens that contain a newline: where a line (a reasoning step) ends."""
        return [i for i, t in enumerate(self.tokens) if b"\n" in t]

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids if int(i) < len(self.tokens)])   # specials are dropped

    def to_dict(self) -> dict:
        return {"pat_str": self.pat_str, "tokens": [t.hex() for t in self.tokens], "specials": list(self.special_ids)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer") -> "Tokenizer":
        try:
            return cls([bytes.fromhex(t) for t in d["tokens"]], tuple(d["specials"]), d["pat_str"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: not a nanoreason tokenizer ({e.__class__.__name__}: {e})") from None

    def save(self, path: str):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read tokenizer ({e})") from None
        return cls.from_dict(d, where=path)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()
