"""Token counters for the chunker's budget.

``WordPieceCounter`` gives exactly the number of word pieces the MiniLM (BERT uncased) tokenizer makes,
WITHOUT the two special tokens [CLS] and [SEP]: the embedders subtract those from the model's limit, so
chunk budgets are for text only. Loading it reads ``tokenizer.json`` only, never the model weights.

``approx_token_count`` is a cheap, conservative estimate for models whose tokenizer is not at hand.
Both are additive over text joined with whitespace, which the chunker relies on for speed.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

# Printable ASCII plus tab/newline/CR: on such text BERT's normaliser only lowercases and its
# pre-tokeniser splits on whitespace and on every ASCII punctuation character, so the words are the
# letter/digit runs between whitespace and punctuation, and each punctuation character is one token.
# Other text is cut where BERT sees whitespace (its normaliser maps these to spaces) and each piece
# goes through the real tokenizer, memoised. Control characters are deleted by the normaliser, so a
# text containing one (other than tab/newline/CR) is tokenised whole.
_BERT_SPACE_RE = re.compile(r"[ \t\n\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Counted on bytes with C-speed bytes methods (translate, split): a regex findall and a str per
# word cost most of the chunker's time.
_PUNCTUATION = bytes(c for c in range(0x21, 0x7F) if not chr(c).isalnum())
_PUNCTUATION_TO_SPACE = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_MAX_CACHED_WORDS = 500_000


class WordPieceCounter:
    """Counts BERT word pieces of a text (special tokens excluded). Thread-safe, memoised per word."""

    # Word pieces never span whitespace: the count of texts joined by whitespace is the sum of their counts.
    additive = True

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json ships with truncation at 128 and padding: both would falsify counts.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._model = self._tokenizer.model
        self._words: dict[str, int] = {}  # non-ASCII pieces
        self._ascii_words: dict[bytes, int] = {}

    def __call__(self, text: str) -> int:
        if text.isascii():
            raw = text.encode("ascii")
            if not raw.translate(None, _PLAIN_ASCII):
                return self._ascii(raw)
            return self.exact(text)  # an ASCII control character
        if _CONTROL_RE.search(text):
            return self.exact(text)
        total = 0
        plain: list[str] = []
        for piece in _BERT_SPACE_RE.split(text):
            if not piece:
                continue
            if piece.isascii():  # no control characters in ``text``: plain ASCII
                plain.append(piece)
                continue
            pieces = self._words.get(piece)
            if pieces is None:
                pieces = self._remember(piece, self.exact(piece))
            total += pieces
        # Counts add up over text joined with whitespace: the ASCII pieces are counted in one go.
        return total + self._ascii(" ".join(plain).encode("ascii")) if plain else total

    def _ascii(self, raw: bytes) -> int:
        """Word pieces of plain ASCII (printable, tab, newline, CR) given as bytes."""
        lowered = raw.lower()
        punctuation = len(lowered) - len(lowered.translate(None, _PUNCTUATION))
        found = lowered.translate(_PUNCTUATION_TO_SPACE).split()
        words = self._ascii_words
        try:
            return punctuation + sum(map(words.__getitem__, found))  # the common case: every word seen before
        except KeyError:
            pass
        total = punctuation
        for word in found:
            pieces = words.get(word)
            if pieces is None:
                if len(words) >= _MAX_CACHED_WORDS:
                    words.clear()
                pieces = words[word] = len(self._model.tokenize(word.decode("ascii")))
            total += pieces
        return total

    def _remember(self, word: str, pieces: int) -> int:
        if len(self._words) >= _MAX_CACHED_WORDS:
            self._words.clear()
        self._words[word] = pieces
        return pieces

    def exact(self, text: str) -> int:
        """The tokenizer's own answer, for tests that check the fast path."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


@cache
def _wordpiece_counter(tokenizer_file: str) -> WordPieceCounter:
    return WordPieceCounter(Path(tokenizer_file))


def wordpiece_counter(tokenizer_file: Path) -> WordPieceCounter:
    """One shared counter per tokenizer file and process."""
    return _wordpiece_counter(str(tokenizer_file))


_APPROX_RE = re.compile(r"[A-Za-z]+|[0-9]+|\S")


def approx_token_count(text: str) -> int:
    """A word-piece-like estimate that errs high: ~1 token per 5 letters, per 3 digits, per symbol."""
    total = 0
    for word in _APPROX_RE.findall(text):
        first = word[0]
        if first.isascii() and first.isalpha():
            total += (len(word) + 4) // 5
        elif first.isascii() and first.isdigit():
            total += (len(word) + 2) // 3
        else:
            total += 1
    return total


approx_token_count.additive = True  # type: ignore[attr-defined]  # no match spans whitespace
