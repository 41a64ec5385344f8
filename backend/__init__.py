"""LLM Workbench backend: a plain library (no Streamlit) for models, generation and the rest."""
