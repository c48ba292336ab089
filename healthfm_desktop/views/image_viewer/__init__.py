"""The image_viewer workspace's widgets."""
