"""Reusable Streamlit pieces of the workbench (the backend has no Streamlit in it)."""
