"""Checkpoint comparison: one base model serving LoRA variants, side-by-side generation, and
batch evaluation on a validation file (ROUGE-1/2/L, BLEU-4, validation loss). No Streamlit."""
