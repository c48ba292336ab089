"""The patient_view workspace's widgets."""
