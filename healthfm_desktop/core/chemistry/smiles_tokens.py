"""SMILES tokenisation for the SMILES language model: one regular expression (Schwaller et al.,
ACS Cent. Sci. 2019) that keeps bracket atoms ([nH], [C@@H], [N+]), two-letter elements (Cl, Br)
and two-digit ring closures (%12) whole. Used by both the training script and the app's sampler,
so the token ids the model learnt are the ids the app feeds it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

SMILES_TOKEN = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


class SmilesTokenError(ValueError):
    """A SMILES string holds characters the tokeniser cannot split into SMILES tokens."""


def tokenize(smiles: str) -> list[str]:
    """SMILES tokens of ``smiles``; raises SmilesTokenError when characters are left over."""
    tokens = SMILES_TOKEN.findall(smiles)
    if sum(len(t) for t in tokens) != len(smiles):
        raise SmilesTokenError(f"not a tokenisable SMILES string: {smiles!r}")
    return tokens


class Vocabulary:
    """Token ↔ id mapping; ids 0..3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            tokens = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.pad, self.bos, self.eos, self.unk = (self.index[t] for t in SPECIAL_TOKENS)

    @classmethod
    def build(cls, smiles: Iterable[str]) -> "Vocabulary":
        seen: dict[str, int] = {}
        for s in smiles:
            for t in tokenize(s):
                seen[t] = seen.get(t, 0) + 1
        # most frequent first, ties alphabetical: the same data always gives the same ids
        return cls(sorted(seen, key=lambda t: (-seen[t], t)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, smiles: str, bos: bool = True, eos: bool = True) -> list[int]:
        ids = [self.index.get(t, self.unk) for t in tokenize(smiles)]
        return ([self.bos] if bos else []) + ids + ([self.eos] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens up to the first <eos>; <bos> and <pad> are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.bos, self.pad):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return "".join(out)
