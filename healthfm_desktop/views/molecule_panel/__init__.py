"""The molecule_panel workspace's widgets."""
