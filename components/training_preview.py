"""The data check's report and a preview of converted samples with trained spans marked."""

from __future__ import annotations

import html

import streamlit as st

from backend.training.data import DataReport
from backend.training.encoding import ChatEncoder
from backend.training.formats import Conversation

MARK = ("<mark style='background:#1b5e20;color:#e8f5e9;border-radius:3px;padding:0 1px'>"
        "{}</mark>")


def marked_html(pieces: list[tuple[str, bool]]) -> str:
    """Rendered text as escaped HTML, trained pieces highlighted."""
    body = "".join(MARK.format(html.escape(text)) if trained else html.escape(text)
                   for text, trained in pieces)
    return ("<pre style='white-space:pre-wrap;word-break:break-word;font-size:0.85em;"
            f"padding:0.6em;border-radius:6px;border:1px solid #444'>{body}</pre>")


def render_report(label: str, report: DataReport) -> None:
    """Summary, problems (each naming the record and line) and notes of one file."""
    if report.ok:
        st.success(f"{label}: {report.summary()}")
    else:
        more = report.problem_count - len(report.problems)
        lines = "\n".join(f"- {p}" for p in report.problems)
        extra = f"\n- … and {more} more" if more > 0 else ""
        st.error(f"{label}: {report.problem_count} problem(s); nothing was launched.\n\n"
                 f"{lines}{extra}")
    if report.notes:
        with st.expander(f"{len(report.notes)} note(s)"):
            st.text("\n".join(report.notes[:50]))


def render_preview(conversations: list[Conversation], encoder: ChatEncoder, count: int = 3,
                   ) -> None:
    """The first samples as the model will see them; highlighted text is trained."""
    if not conversations:
        return
    st.caption("Preview: the text comes from the model's chat template; "
               ":green-background[highlighted] spans are trained, the rest is context only.")
    for conv in conversations[:count]:
        where = f"record {conv.record.number}" + (
            f", line {conv.record.line}" if conv.record.line else "")
        st.markdown(f"**{where}** · {conv.format}")
        st.markdown(marked_html(encoder.marked_pieces(conv.turns)), unsafe_allow_html=True)
