"""Shared by train_esol.py and train_tox21.py: data loading, random split, bootstrap CIs, the
applicability domain, and writing the model with its manifest and card. Featurisation itself lives in healthfm_desktop.core.chemistry."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import numpy as np
from rdkit import Chem

from healthfm_desktop.core.chemistry.reading import parse_smiles

DATA = Path(__file__).resolve().parent / "data" / "molecules"
MODELS = Path(__file__).resolve().parent.parent


def read_rows(path: Path, limit: int | None = None) -> tuple[list[dict], list[Chem.Mol]]:
    """Rows whose SMILES RDKit parses (the others are counted and reported by the caller)."""
    rows, mols = [], []
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            mol, _ = parse_smiles(row["smiles"])
            if mol is None:
                continue
            rows.append(row)
            mols.append(mol)
            if limit and len(rows) >= limit:
                break
    return rows, mols


def random_split(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MoleculeNet's recommended random 80/10/10 split."""
    order = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return order[:a], order[a:b], order[b:]


def bootstrap_ci(metric, y_true: np.ndarray, y_pred: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    n = len(y_true)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            value = metric(y_true[idx], y_pred[idx])
        except ValueError:  # a resample without both classes
            continue
        if value is not None and np.isfinite(value):
            values.append(value)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # small models on a shared 2-core machine: more threads only fight each other
    torch.set_num_threads(1)


def make_mlp_ensemble(x_train, y_train, m_train, x_val, y_val, m_val, kind: str, seeds, hidden=(512, 128),
                      dropout=0.25, epochs=200, lr=1e-3, weight_decay=1e-4, batch=64, log=print, columns=None):
    """Train one MLP per seed (early-stopped on validation loss) and return a torch module that
    standardises raw features, runs every member and averages (probabilities for classification).

    ``kind`` is 'regression' (MSE on standardised targets) or 'classification' (BCE per task,
    masked where a label is missing: ``m_*`` are 0/1 masks of the same shape as ``y_*``)."""
    import torch
    from torch import nn

    # the model takes the full shared feature vector and uses ``columns`` (a slice) of it
    columns = columns or slice(None)
    x_train, x_val = x_train[:, columns], x_val[:, columns]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-6] = 1.0
    y_mean = np.zeros(y_train.shape[1], dtype=np.float32)
    y_std = np.ones(y_train.shape[1], dtype=np.float32)
    if kind == "regression":
        y_mean = y_train.mean(axis=0).astype(np.float32)
        y_std = y_train.std(axis=0).astype(np.float32)
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xv = torch.tensor((x_val - mean) / std, dtype=torch.float32)
    yt = torch.tensor((np.nan_to_num(y_train) - y_mean) / y_std, dtype=torch.float32)
    yv = torch.tensor((np.nan_to_num(y_val) - y_mean) / y_std, dtype=torch.float32)
    mt = torch.tensor(m_train, dtype=torch.float32)
    mv = torch.tensor(m_val, dtype=torch.float32)
    n_out = y_train.shape[1]

    if kind == "classification":
        # weight positives per task so rare actives are not ignored
        pos = (np.nan_to_num(y_train) * m_train).sum(axis=0)
        neg = ((1 - np.nan_to_num(y_train)) * m_train).sum(axis=0)
        pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 1, 30) ** 0.5, dtype=torch.float32)

    def loss_fn(out, y, m):
        if kind == "regression":
            return (((out - y) ** 2) * m).sum() / m.sum().clamp(min=1)
        raw = nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none", pos_weight=pos_weight)
        return (raw * m).sum() / m.sum().clamp(min=1)

    members = []
    for seed in seeds:
        torch.manual_seed(seed)
        layers, width = [], xt.shape[1]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        net = nn.Sequential(*layers)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_state, patience = float("inf"), None, 0
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), batch):
                idx = perm[i : i + batch]
                opt.zero_grad()
                loss = loss_fn(net(xt[idx]), yt[idx], mt[idx])
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val = float(loss_fn(net(xv), yv, mv))
            if val < best - 1e-4:
                best, patience = val, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                patience += 1
                if patience >= 25:
                    break
        net.load_state_dict(best_state)
        net.eval()
        log(f"  member seed {seed}: best validation loss {best:.4f} at epoch {epoch + 1 - patience}")
        members.append(net)

    class Ensemble(nn.Module):
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(members)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.register_buffer("y_mean", torch.tensor(y_mean))
            self.register_buffer("y_std", torch.tensor(y_std))

        def forward(self, features):
            z = (features[:, columns] - self.mean) / self.std
            outs = [m(z) for m in self.members]
            if kind == "classification":
                return torch.stack([torch.sigmoid(o) for o in outs]).mean(0)
            return torch.stack(outs).mean(0) * self.y_std + self.y_mean

    return Ensemble().eval()


def export_onnx(module, n_features: int, path: Path, input_name="features", output_name="output") -> None:
    import torch

    dummy = torch.zeros(2, n_features, dtype=torch.float32)
    torch.onnx.export(
        module, (dummy,), str(path), input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, opset_version=17,
        dynamo=False, external_data=False,
    )


def fit_domain(packed: np.ndarray, train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> tuple[float, np.ndarray]:
    """The applicability-domain threshold (from validation molecules' max Tanimoto to the
    training set) and which test molecules fall inside it."""
    from healthfm_desktop.core.chemistry.applicability import choose_threshold
    from healthfm_desktop.core.inference.domain import EmbeddingDomain

    # the app's own domain rule (ApplicabilityDomain wraps it): nearest-molecule Tanimoto
    domain = EmbeddingDomain(packed[train], np.inf, k=1, metric="tanimoto", fingerprint_bits=packed.shape[1] * 8)

    def max_similarities(queries: np.ndarray) -> np.ndarray:
        return domain.similarities(packed[queries]).max(axis=1)

    threshold = choose_threshold(max_similarities(valid))
    domain.threshold = 1.0 - threshold
    best = max_similarities(test)
    return threshold, domain.judge(1.0 - best, np.zeros((len(best), 1), dtype=np.int64)).in_domain


def save_model(out: Path, module, onnx_output: str, domain, manifest: dict, write_card, started: float) -> None:
    """Export ``module`` to ONNX as the manifest's ``file``, save its applicability domain, then
    the manifest (completed in place with the domain file's hash) and the card, all under ``out``."""
    import time

    from healthfm_desktop.core.chemistry.featurize import FEATURE_SIZE
    from healthfm_desktop.core.inference.registry import sha256_of, write_manifest

    name = manifest["name"]
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / manifest["file"]
    export_onnx(module, FEATURE_SIZE, onnx_path, output_name=onnx_output)
    ad_path = out / f"{name}_ad.npz"
    domain.save(ad_path)
    manifest["applicability_domain"] = {
        "file": ad_path.name, "sha256": sha256_of(ad_path), "fingerprint": "Morgan r=2, 2048 bits",
        "measure": "max Tanimoto to the training set", "threshold": domain.threshold,
        "threshold_rule": "10th percentile of validation molecules' max Tanimoto to the training set",
    }
    write_manifest(out / f"{name}.json", manifest)
    write_card(out / f"{name}.md", manifest, time.time() - started)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size // 1024} KiB) in {time.time() - started:.0f} s")
