"""Where one index-build chunk and one substructure-data chunk spend their time, against RDKit parse + Morgan fingerprint (issue 19)."""
import argparse
import cProfile
import gzip
import pstats
import sys
import time
from pathlib import Path

from rdkit import Chem, RDLogger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy

from healthfm_desktop.core.chemistry import search_index  # noqa: E402
from healthfm_desktop.core.chemistry.fingerprints import morgan_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", help="a MOSES part (.csv.gz, columns id,smiles,...)")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    RDLogger.DisableLog("rdApp.*")
    with gzip.open(args.library, "rt") as handle:
        smiles = [line.split(",")[1] for line in handle.read().splitlines()[1 : args.rows + 1]]
    gen = morgan_generator()

    def baseline():
        for text in smiles:
            mol = Chem.MolFromSmiles(text)
            if mol is not None:
                gen.GetFingerprintAsNumPy(mol)

    base, ours, later = [], [], []
    for _ in range(args.repeat):  # ABAB, one process, medians
        t = time.perf_counter()
        baseline()
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        search_index._similarity_chunk(smiles)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        search_index._substructure_chunk(smiles)
        later.append(time.perf_counter() - t)
    b, o, s = (sorted(x)[len(x) // 2] for x in (base, ours, later))
    print(f"{len(smiles)} molecules, one process: RDKit parse+fp {b:.2f} s, index build chunk {o:.2f} s "
          f"(speed ratio {b / o:.3f}x), substructure-data chunk (first substructure search) {s:.2f} s ({s / b:.2f}x "
          f"the baseline's time)")
    profile = cProfile.Profile()
    profile.enable()
    search_index._substructure_chunk(smiles)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
