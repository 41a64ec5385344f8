"""Uploads into the working folder: safe names, limits, links, listing, the #File lines."""

from __future__ import annotations

import os

import pytest

from backend.interpreter import (
    UploadError,
    list_files,
    read_file,
    sanitize_filename,
    save_upload,
    upload_prefix,
)


@pytest.mark.parametrize(("raw", "safe"), [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\evil.csv", "evil.csv"),
    ("données été 2024.csv", "données été 2024.csv"),
    ("  résumé final .xlsx ", "résumé final .xlsx"),
    (".bashrc", "bashrc"),
    ("..", "upload"),
    ("", "upload"),
    ("a\x00b\nc\u202etxt.exe", "abctxt.exe"),
    ('what?<is>:this|".json', "what__is__this__.json"),
    ("e\u0301.txt", "é.txt"),
])
def test_sanitize_filename(raw, safe):
    assert sanitize_filename(raw) == safe


def test_long_names_are_cut_but_keep_the_extension():
    name = sanitize_filename("ü" * 300 + ".jsonl")
    assert name.endswith(".jsonl") and len(name.encode()) <= 200


def test_traversal_stays_inside_the_folder(tmp_path):
    work = tmp_path / "work"
    info = save_upload(work, "../../etc/passwd", b"root:x:0:0")
    assert info.path == work.resolve() / "passwd"
    assert info.path.read_bytes() == b"root:x:0:0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_unicode_binary_and_size(tmp_path):
    blob = bytes(range(256)) * 40
    info = save_upload(tmp_path, "mes données.bin", blob)
    assert info.name == "mes données.bin" and info.size == len(blob)
    assert (tmp_path / "mes données.bin").read_bytes() == blob


def test_empty_and_too_large_uploads_are_refused(tmp_path):
    with pytest.raises(UploadError, match="empty"):
        save_upload(tmp_path, "empty.csv", b"")
    with pytest.raises(UploadError, match="limit"):
        save_upload(tmp_path, "big.csv", b"x" * 2048, max_bytes=1024)
    assert list(tmp_path.iterdir()) == []


def test_a_planted_link_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(outside, work / "data.csv")
    save_upload(work, "data.csv", b"a,b\n1,2\n")
    assert outside.read_text() == "precious"
    assert not (work / "data.csv").is_symlink()
    assert (work / "data.csv").read_bytes() == b"a,b\n1,2\n"


def test_list_and_read_skip_links_and_hidden_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "chart.png").write_bytes(b"png")
    (tmp_path / "result.csv").write_text("1")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_text("c")
    os.symlink("/etc/hostname", tmp_path / "link.txt")
    assert [f.name for f in list_files(tmp_path)] == ["out/chart.png", "result.csv"]
    assert read_file(tmp_path, "out/chart.png") == b"png"
    for bad in ("link.txt", "../" + tmp_path.name + "/result.csv/..", "/etc/hostname"):
        with pytest.raises(UploadError):
            read_file(tmp_path, bad)


def test_upload_prefix_follows_chatglm3(tmp_path):
    info = save_upload(tmp_path, "metadata.jsonl", b"{}\n" * 10)
    assert upload_prefix([info]) == (
        f"#File: {tmp_path.resolve()}/metadata.jsonl\n#Size: 30\n#File uploaded\n")
