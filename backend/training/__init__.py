"""LoRA training: data formats, the training CLI (`python -m backend.training`), the launcher
that runs it as a subprocess, and the registry of runs on disk. Plain library, no Streamlit.
"""
