from meshgnn.atomic import atomic_write_text, remove_orphaned_temp_files


def test_orphaned_temp_files_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    atomic_write_text(tmp_path / "last.ckpt", "good")
    orphan = tmp_path / ".last.ckpt.x1y2z3.tmp"  # what kill -9 during a save leaves behind
    orphan.write_text("half")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    assert remove_orphaned_temp_files(tmp_path) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.tmp"]
    assert (tmp_path / "last.ckpt").read_text() == "good"
