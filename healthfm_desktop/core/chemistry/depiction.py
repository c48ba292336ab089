"""2D depictions for the grid and the detail pane: RDKit's Cairo drawer to PNG bytes (the views
show bytes and never import RDKit), with alert atoms highlighted."""

from __future__ import annotations

from rdkit import Chem
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import rdMolDraw2D

from healthfm_desktop.core.chemistry.reading import capture_rdkit_log

ALERT_COLOUR = (1.0, 0.55, 0.55)


def depict_png(mol: Chem.Mol, width: int = 200, height: int = 150, highlight_atoms: list[int] | None = None,
               legend: str = "") -> bytes:
    with capture_rdkit_log():
        copy = Chem.Mol(mol)
        if not copy.GetNumConformers() or copy.GetConformer().Is3D():
            rdDepictor.Compute2DCoords(copy)
        drawer = rdMolDraw2D.MolDraw2DCairo(width, height)
        options = drawer.drawOptions()
        options.clearBackground = True
        atoms = sorted(set(highlight_atoms or []))
        colours = {a: ALERT_COLOUR for a in atoms}
        bonds = [b.GetIdx() for b in copy.GetBonds() if b.GetBeginAtomIdx() in colours and b.GetEndAtomIdx() in colours]
        try:
            rdMolDraw2D.PrepareAndDrawMolecule(drawer, copy, legend=legend, highlightAtoms=atoms,
                                               highlightAtomColors=colours, highlightBonds=bonds,
                                               highlightBondColors={b: ALERT_COLOUR for b in bonds})
        except Exception:  # a molecule RDKit cannot kekulise for drawing is drawn as is
            drawer = rdMolDraw2D.MolDraw2DCairo(width, height)
            drawer.drawOptions().prepareMolsBeforeDrawing = False
            drawer.DrawMolecule(copy)
        drawer.FinishDrawing()
        return drawer.GetDrawingText()
