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
        for t in range(self.max_tokens):
            logits, state = self.step(token, state)
            logits = logits.astype(np.float64) / temperature
            logits[:, vocab.pad] = -np.inf
            logits[:, vocab.bos] = -np.inf
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            # inverse-CDF sampling of one token per row, all rows at once
            draws = rng.random(n)[:, None]
            token = (probs.cumsum(axis=1) < draws).sum(axis=1)
            token = np.minimum(token, len(vocab) - 1)
            token = np.where(forced[:, t] >= 0, forced[:, t], token)
            token = np.where(finished, vocab.pad, token)
            generated[:, t] = token
            finished |= token == vocab.eos
            if finished.all():
                break
        # a sequence that never ended is cut off: it is returned incomplete and fails parsing
        return [vocab.decode(row) if done else "" for row, done in zip(generated, finished)]
