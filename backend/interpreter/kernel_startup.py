"""Code the workbench runs once inside each new kernel (never imported by the app itself).

`KernelSession` sends this file's text to the kernel, calls `_workbench_setup(...)`, deletes it:
- stdout/stderr writes are capped per cell at `limit` characters, at the source, so a cell that
  prints 50 MB sends `limit` characters over the wire (the app sees the overflow and says so);
- the text repr of a long str/bytes result is cut the same way;
- pandas DataFrames and Series also publish a table (`table_mime`, the first
  `table_rows` rows) that the page shows as a table instead of the text repr.
"""


def _workbench_setup(limit: int, table_mime: str, table_rows: int) -> None:
    import json
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    shell = get_ipython()

    class TableFormatter(BaseFormatter):
        format_type = Unicode(table_mime)
        print_method = ObjectName("_repr_data_resource_")
        _return_type = dict

    def frame_table(frame):
        return json.loads(frame.head(table_rows).to_json(orient="table", default_handler=str))

    def series_table(series):
        return frame_table(series.to_frame())

    tables = TableFormatter(parent=shell.display_formatter)
    # pandas 3 names its public classes' module "pandas"; older versions use the defining module
    for module, name, table in (("pandas", "DataFrame", frame_table),
                                ("pandas.core.frame", "DataFrame", frame_table),
                                ("pandas", "Series", series_table),
                                ("pandas.core.series", "Series", series_table)):
        tables.for_type_by_name(module, name, table)
    shell.display_formatter.formatters[table_mime] = tables
    shell.display_formatter.active_types.append(table_mime)

    def long_text(value, printer, _cycle) -> None:
        printer.text(repr(value[:limit]) if len(value) > limit else repr(value))

    plain = shell.display_formatter.formatters["text/plain"]
    plain.for_type(str, long_text)
    plain.for_type(bytes, long_text)

    state = {"written": 0}

    def new_cell(*_args) -> None:
        state["written"] = 0

    shell.events.register("pre_run_cell", new_cell)

    def capped_class(base):
        class CappedStream(base):
            # IPython re-binds `stream.write` around every cell (to keep a copy of all output in
            # its history); the property keeps the capped write in place and drops that copy.
            @property
            def write(self):
                return self._capped_write

            @write.setter
            def write(self, _value) -> None:
                pass

            def _capped_write(self, text):
                if not isinstance(text, str):
                    return base.write(self, text)
                room = limit - state["written"]
                if room > 0:
                    state["written"] += min(len(text), room)
                    base.write(self, text if len(text) <= room else text[:room])
                return len(text)

        return CappedStream

    for stream in (sys.stdout, sys.stderr):
        stream.__class__ = capped_class(type(stream))
