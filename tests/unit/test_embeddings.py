"""The vectorised hashing embedder gives, bit for bit, the vectors of the one-token-at-a-time
algorithm it replaced: chunks indexed before the change and questions embedded after it must
still meet."""

from __future__ import annotations

import hashlib
import math

import pytest

from coach.embeddings import HashingEmbedder, tokens


def reference(text: str, dim: int) -> list[float]:
    """The previous implementation, kept verbatim as the oracle."""
    vector = [0.0] * dim
    for token in tokens(text):
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


TEXTS = [
    "",
    "   \n\t",
    "+-*/ () {} []",  # no tokens at all
    "parseHttpRequest(max_size)",
    "class XMLHttpRequest2Parser: __init__ = None",
    "日本語のコード ٣٤٥ café naïve Ωmega x1 ①",  # non-ASCII digits are tokens too
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n",
    "SELECT id FROM chunks WHERE id > $1 ORDER BY id LIMIT 1024;",
    "x " * 40_000,  # one slot counted 40,000 times
    "\n".join(f"def step_{i}_{i * 7919 % 997}(s):\n    return s + {i}" for i in range(600)),
]


@pytest.mark.parametrize("dim", [8, 256, 1536])
def test_vectors_equal_the_reference_bit_for_bit(dim: int) -> None:
    embedder = HashingEmbedder(dim)
    expected = [reference(text, dim) for text in TEXTS]
    assert embedder.embed(TEXTS) == expected
    assert embedder.embed(TEXTS[::-1]) == expected[::-1], "word cache warm, order reversed"
    assert [embedder.embed([text])[0] for text in TEXTS] == expected, "one text a call"


def test_a_full_word_cache_starts_over_without_changing_vectors() -> None:
    embedder = HashingEmbedder(64)
    embedder.WORD_CACHE = 5
    texts = [f"alpha beta gamma{n} delta{n}" for n in range(20)]
    assert [embedder.embed([text])[0] for text in texts] == [reference(t, 64) for t in texts]
    assert embedder.embed(texts) == [reference(text, 64) for text in texts], "over the cap"


def test_an_empty_batch_is_no_vectors() -> None:
    assert HashingEmbedder(16).embed([]) == []
