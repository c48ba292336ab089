"""Sampling the SMILES language model (models/smiles_generator.onnx, one recurrent step per call)
with numpy and onnxruntime: many sequences advance together, each row of the batch one
molecule; optional per-row prefixes are forced token by token before free sampling starts, which
is how analogues of a seed are primed with pieces of the seed's (randomised) SMILES."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from healthfm_desktop.core.chemistry.smiles_tokens import SmilesTokenError, Vocabulary
from healthfm_desktop.core.errors import ModelError

MODEL_NAME = "smiles_generator"


class SmilesGenerator:
    """The shipped SMILES model, loaded once through the model registry."""

    def __init__(self, registry=None, threads: int = 0):
        if registry is None:
            from healthfm_desktop.core.inference.registry import load_registry

            registry = load_registry()
        self.session, self.manifest, _ = registry.session(MODEL_NAME, threads=threads)
        self.vocab = Vocabulary(self.manifest.labels)
        try:
            state = next(i for i in self.manifest.inputs if i["name"] == "state")
            self.layers, self.hidden = int(state["shape"][0]), int(state["shape"][2])
        except (StopIteration, KeyError, IndexError, TypeError, ValueError):
            raise ModelError(f"model {MODEL_NAME!r}: manifest lacks the shape of its 'state' input") from None
        self.max_tokens = int(self.manifest.preprocessing.get("max_tokens", 100))
        # the temperature the model card's metrics were measured at
        self.temperature = float(self.manifest.preprocessing.get("sampling_temperature", 1.0))
        # syntax-constrained decoding (SmilesGrammar); the model card says which its metrics used
        self.constrained = bool(self.manifest.preprocessing.get("constrained_decoding", False))

    def step(self, tokens: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, state = self.session.run(None, {"token": tokens.astype(np.int64), "state": state})
        return logits, state

    def encode_prefix(self, smiles: str) -> list[int]:
        """Token ids of a SMILES prefix (no <eos>); unknown tokens raise ValueError, because the
        model would continue from a token it never learnt."""
        try:
            ids = self.vocab.encode(smiles, bos=False, eos=False)
        except SmilesTokenError as exc:
            raise ValueError(str(exc)) from exc
        if self.vocab.unk in ids:
            raise ValueError(f"{smiles!r} holds tokens the model does not know")
        return ids

    def sample(self, count: int, temperature: float | None = None, rng: np.random.Generator | None = None,
               prefixes: Sequence[Sequence[int]] | None = None, batch: int = 512) -> list[str]:
        """``count`` SMILES strings (not yet checked by RDKit); see ``sample_steps``."""
        steps = self.sample_steps(count, temperature, rng, prefixes, batch)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    def sample_steps(self, count: int, temperature: float | None = None, rng: np.random.Generator | None = None,
                     prefixes: Sequence[Sequence[int]] | None = None,
                     batch: int = 512) -> Generator[tuple[int, int], None, list[str]]:
        """Generator: yields (sampled so far, count) after each batch of ``batch`` sequences and
        returns the ``count`` SMILES strings (a caller stops it between batches to cancel).
        ``prefixes`` (token ids, one per row, cycled) are forced at the start of each sequence
        and are part of the returned string. ``temperature`` None: the model card's."""
        temperature = self.temperature if temperature is None else temperature
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        rng = rng or np.random.default_rng()
        out: list[str] = []
        while len(out) < count:
            n = min(batch, count - len(out))
            rows = None
            if prefixes:
                rows = [prefixes[(len(out) + k) % len(prefixes)] for k in range(n)]
            out += self._sample_batch(n, temperature, rng, rows)
            yield len(out), count
        return out

    def _sample_batch(self, n, temperature, rng, prefixes) -> list[str]:
        vocab = self.vocab
        forced = np.full((n, self.max_tokens), -1, dtype=np.int64)
        if prefixes is not None:
            for k, ids in enumerate(prefixes):
                ids = list(ids)[: self.max_tokens - 1]
                forced[k, : len(ids)] = ids
        state = np.zeros((self.layers, n, self.hidden), dtype=np.float32)
        token = np.full(n, vocab.bos, dtype=np.int64)
        generated = np.full((n, self.max_tokens), vocab.pad, dtype=np.int64)
        finished = np.zeros(n, dtype=bool)
        grammar = SmilesGrammar(vocab, n) if self.constrained else None
        for t in range(self.max_tokens):
            logits, state = self.step(token, state)
            logits = logits.astype(np.float64) / temperature
            logits[:, vocab.pad] = -np.inf
            logits[:, vocab.bos] = -np.inf
            logits[:, vocab.unk] = -np.inf
            if grammar is not None:
                allowed = grammar.allowed()
                # a row the rules would leave without any choice keeps the model's own choice
                allowed[~allowed.any(axis=1)] = True
                logits[~allowed] = -np.inf
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            # inverse-CDF sampling of one token per row, all rows at once
            draws = rng.random(n)[:, None]
            token = (probs.cumsum(axis=1) < draws).sum(axis=1)
            token = np.minimum(token, len(vocab) - 1)
            token = np.where(forced[:, t] >= 0, forced[:, t], token)
            token = np.where(finished, vocab.pad, token)
            if grammar is not None:
                grammar.advance(token)
            generated[:, t] = token
            finished |= token == vocab.eos
            if finished.all():
                break
        # a sequence that never ended is cut off: it is returned incomplete and fails parsing
        return [vocab.decode(row) if done else "" for row, done in zip(generated, finished)]


ATOM, BOND, OPEN, CLOSE, RING, START, OTHER = range(7)


class SmilesGrammar:
    """Which tokens may come next in each of ``n`` partial SMILES strings (constrained decoding).

    Enforces only SMILES *syntax*, never chemistry: branches open before they close and are not
    empty, ring-closure digits close only rings that are open (and not on the atom that opened
    them), a bond is followed by an atom or ring digit, the string ends only with every branch
    and ring closed, and a single molecule is written (no '.'). Valence and aromaticity stay the
    model's job, and RDKit still checks every result."""

    def __init__(self, vocab: Vocabulary, n: int):
        self.vocab = vocab
        kinds = np.full(len(vocab), OTHER)
        for i, tok in enumerate(vocab.tokens):
            if tok.startswith("[") or tok in ("B", "C", "N", "O", "S", "P", "F", "I", "Cl", "Br",
                                               "b", "c", "n", "o", "s", "p", "*"):
                kinds[i] = ATOM
            elif tok in ("=", "#", "-", "/", "\\", ":", "~", "$"):
                kinds[i] = BOND
            elif tok == "(":
                kinds[i] = OPEN
            elif tok == ")":
                kinds[i] = CLOSE
            elif tok.isdigit() or tok.startswith("%"):
                kinds[i] = RING
        self.kinds = kinds
        self.ring_ids = np.flatnonzero(kinds == RING)
        self.ring_slot = {int(t): k for k, t in enumerate(self.ring_ids)}
        self.dot = vocab.index.get(".")
        self.last = np.full(n, START)
        self.depth = np.zeros(n, dtype=np.int64)
        self.open_rings = np.zeros((n, len(self.ring_ids)), dtype=bool)
        self.opened_here = np.zeros((n, len(self.ring_ids)), dtype=bool)

    def allowed(self) -> np.ndarray:
        kinds, last = self.kinds[None, :], self.last[:, None]
        after_atomish = np.isin(last, (ATOM, RING, CLOSE))
        allowed = np.zeros((len(self.last), len(self.kinds)), dtype=bool)
        allowed |= kinds == ATOM
        allowed |= (kinds == BOND) & (after_atomish | (last == OPEN))
        allowed |= (kinds == OPEN) & after_atomish
        allowed |= (kinds == CLOSE) & after_atomish & (self.depth[:, None] > 0) & (last != OPEN)
        allowed |= (kinds == OTHER) & after_atomish
        if self.dot is not None:
            allowed[:, self.dot] = False
        # ring digits: after an atom, a ring digit or a bond; never closing on the opening atom
        ring_ok = (np.isin(self.last, (ATOM, RING, BOND)))[:, None] & ~(self.open_rings & self.opened_here)
        allowed[:, self.ring_ids] = ring_ok
        ending_ok = np.isin(self.last, (ATOM, RING, CLOSE)) & (self.depth == 0) & ~self.open_rings.any(axis=1)
        allowed[:, self.vocab.eos] = ending_ok
        allowed[:, [self.vocab.pad, self.vocab.bos, self.vocab.unk]] = False
        return allowed

    def advance(self, tokens: np.ndarray) -> None:
        kinds = self.kinds[tokens]
        rows = np.arange(len(tokens))
        self.depth += (kinds == OPEN).astype(np.int64) - (kinds == CLOSE).astype(np.int64)
        self.opened_here[kinds == ATOM] = False
        ring_rows = rows[kinds == RING]
        if len(ring_rows):
            slots = np.array([self.ring_slot[int(t)] for t in tokens[ring_rows]])
            was_open = self.open_rings[ring_rows, slots]
            self.open_rings[ring_rows, slots] = ~was_open
            self.opened_here[ring_rows, slots] = ~was_open
        special = np.isin(tokens, (self.vocab.eos, self.vocab.pad))
        self.last = np.where(special, self.last, kinds)
