"""restore-check's pure core: reading a pod backup's layer tar (OCI and overlayfs forms, bad
input refused), classifying every path three-way against REF and the successor's own layers,
the databases merged by entry, the verdict, and the merged layer written back."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from imagectl.adapters.docker_layers import read_layer
from imagectl.core.errors import BackupError
from imagectl.core.layerfiles import FileSelection, LayerChange, merged_dirs
from imagectl.core.layertar import LayerTar, read_layer_tar, write_layer_tar
from imagectl.core.restores import (
    Class,
    FixChanges,
    RestoreCheck,
    Verdict,
    check_restore,
    fix_changes,
    folders_to_ask,
    relevant_to,
)
from imagectl.core.sysdbs import merge_accounts, merge_for, merge_log

from .layer_tars import (
    Member,
    content,
    file,
    folder,
    hardlink,
    layer,
    members,
    opaque,
    overlay_opaque,
    overlay_whiteout,
    symlink,
    whiteout,
)

STATUS_REF = b"""Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4

Package: libssl3
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1
"""
# the fix upgrades libssl3
STATUS_FIX = STATUS_REF.replace(b"3.0.11-1", b"3.0.15-1")
CURL = b"""Package: curl
Status: install ok installed
Architecture: amd64
Version: 7.88.1-10
"""
# the user installed curl (apt-get rewrote the whole file, libssl3 still the old one)
STATUS_USER = STATUS_REF + b"\n" + CURL


def read(data: bytes) -> LayerTar:
    return read_layer_tar(
        io.BytesIO(data), name="backup.tar", keep=lambda p: merge_for(p) is not None
    )


def check(
    backup: bytes,
    *,
    ref: dict[str, bytes] | None = None,
    fix: tuple[LayerChange, ...] = (),
    ref_meta: dict[str, tuple[int, int, int]] | None = None,
) -> RestoreCheck:
    return check_restore(read(backup), ref_files=ref or {}, ref_meta=ref_meta, fix=fix_changes(fix))


def classes(result: RestoreCheck) -> dict[str, str]:
    return {p.path: str(p.cls) for p in result.paths}


def error_of(data: bytes) -> str:
    with pytest.raises(BackupError) as caught:
        read(data)
    return str(caught.value)


# -- reading a layer tar -----------------------------------------------------------------


def test_the_oci_form_whiteouts_and_opaque_folders() -> None:
    tar = read(
        layer(
            folder("etc"),
            file("etc/motd", "hi\n"),
            whiteout("etc/issue"),
            folder("srv"),
            opaque("srv"),
        )
    )
    assert set(tar.entries) == {"etc", "etc/motd", "srv"}
    assert tar.deleted == ("etc/issue",)
    assert tar.opaque == ("srv",)
    assert tar.form == "oci"


def test_the_overlay_form_of_an_upper_directory() -> None:
    tar = read(
        layer(
            folder("."),
            folder("./etc"),
            overlay_whiteout("./etc/issue"),
            overlay_opaque("./srv"),
            file("./srv/new", "x"),
        )
    )
    assert tar.deleted == ("etc/issue",)  # a 0/0 character device is a whiteout, not a device
    assert tar.opaque == ("srv",)
    assert "etc/issue" not in tar.entries
    assert tar.form == "overlay"


def test_a_real_character_device_is_no_whiteout() -> None:
    tar = read(layer(Member("dev/tty", tarfile.CHRTYPE, device=(5, 0))))
    assert tar.deleted == ()
    assert tar.entries["dev/tty"].kind == "device"


@pytest.mark.parametrize("mark", ["redirect", "metacopy"])
def test_redirect_and_metacopy_make_the_restore_refused(mark: str) -> None:
    data = layer(
        folder("opt"), folder("opt/new", **{f"SCHILY.xattr.trusted.overlay.{mark}": "/opt/old"})
    )
    result = check(data)
    assert result.verdict is Verdict.REFUSED
    assert result.refusals == (("opt/new", f"overlay.{mark}"),)


def test_not_a_tar() -> None:
    message = error_of(b"this is a text file, not a layer\n" * 40)
    assert message.startswith("backup.tar: is not a layer tar")
    assert "docker save" in message


def test_a_tar_cut_short() -> None:
    data = layer(file("big", b"x" * 20000))
    message = error_of(data[:5000])
    assert "backup.tar" in message
    assert "not a complete layer tar" in message


def test_a_gzipped_layer_is_read() -> None:
    tar = read(gzip.compress(layer(file("home/u/a", "a"))))
    assert set(tar.entries) == {"home/u/a"}


@pytest.mark.parametrize("name", ["../etc/passwd", "home/../../etc/passwd", "a/.."])
def test_a_path_escaping_the_root(name: str) -> None:
    assert "escapes the root" in error_of(layer(file(name, "x")))


def test_an_absolute_path() -> None:
    assert "absolute path" in error_of(layer(file("/etc/passwd", "x")))


def test_a_relative_symlink_pointing_out_of_the_root() -> None:
    message = error_of(layer(symlink("home/u/escape", "../../../etc/shadow")))
    assert "points out of the root" in message
    assert "home/u/escape" in message


def test_symlinks_that_stay_inside_are_read() -> None:
    tar = read(
        layer(
            symlink("home/u/up", "../../etc/motd"),
            symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
        )
    )
    assert tar.entries["home/u/up"].link == "../../etc/motd"
    assert tar.entries["etc/localtime"].kind == "symlink"


@pytest.mark.parametrize("target", ["/etc/passwd", "../etc/passwd", "etc/elsewhere"])
def test_a_hard_link_out_of_the_layer(target: str) -> None:
    message = error_of(layer(file("etc/hosts", "x"), hardlink("etc/link", target)))
    assert "etc/link" in message or "escapes" in message or "absolute" in message


def test_a_hard_link_takes_its_targets_content() -> None:
    tar = read(layer(file("bin/a", "same"), hardlink("bin/b", "bin/a")))
    assert tar.entries["bin/b"].sha256 == tar.entries["bin/a"].sha256
    assert tar.entries["bin/b"].kind == "hardlink"


def test_a_path_twice_and_a_whiteout_beside_its_own_path() -> None:
    assert "twice" in error_of(layer(file("a", "1"), file("a", "2")))
    assert "both a whiteout and an entry" in error_of(layer(file("a", "1"), whiteout("a")))


def test_an_aufs_internal_file() -> None:
    assert "aufs" in error_of(layer(file(".wh..wh.plnk/1", "")))


# -- classification ----------------------------------------------------------------------


def fix(*layers: LayerChange) -> tuple[LayerChange, ...]:
    return layers


def test_user_only_files_and_a_stale_copy_of_an_untouched_file() -> None:
    result = check(
        layer(folder("home/u"), file("home/u/notes", "mine"), file("etc/hosts", "REF")),
        ref={"etc/hosts": b"REF"},
        fix=fix(LayerChange(files={"etc/other": b"fix"})),
    )
    assert classes(result) == {
        "home/u": "directory",
        "home/u/notes": "user only",
        "etc/hosts": "stale copy",
    }
    assert result.verdict is Verdict.SAFE  # the stale copy hides nothing of the fix
    # and is kept: the successor has the same content, and the copy may carry a mode the
    # user set
    assert result.dropped == set()
    assert [p.action for p in result.paths if p.path == "etc/hosts"] == ["keep"]


def test_a_stale_copy_of_a_file_the_fix_changed_needs_the_merge() -> None:
    result = check(
        layer(file("start", "REF start")),
        ref={"start": b"REF start"},
        fix=fix(LayerChange(files={"start": b"fixed start"})),
    )
    (path,) = result.paths
    assert (path.cls, path.fix, path.hides_fix, path.action) == (
        Class.STALE_COPY,
        "changed",
        True,
        "drop",
    )
    assert result.verdict is Verdict.SAFE_AFTER_MERGE


def test_a_copy_identical_to_the_successors_file_hides_nothing() -> None:
    result = check(
        layer(file("etc/motd", "new")),
        ref={"etc/motd": b"old"},
        fix=fix(LayerChange(files={"etc/motd": b"new"})),
    )
    assert classes(result) == {"etc/motd": "stale copy"}
    assert result.verdict is Verdict.SAFE


def test_a_file_both_changed_is_a_conflict_with_both_sides() -> None:
    result = check(
        layer(file("etc/app.conf", "user's")),
        ref={"etc/app.conf": b"REF"},
        fix=fix(LayerChange(files={"etc/app.conf": b"fix's"})),
    )
    assert result.verdict is Verdict.CONFLICTS
    (conflict,) = result.conflicts
    assert conflict.path == "etc/app.conf"
    assert "both changed it" in conflict.reason
    assert conflict.backup != conflict.successor
    assert conflict.successor.startswith("sha256:")


def test_a_file_the_fix_deleted_and_the_user_changed() -> None:
    result = check(
        layer(file("etc/old.conf", "edited")),
        ref={"etc/old.conf": b"REF"},
        fix=fix(LayerChange(deleted=("etc/old.conf",))),
    )
    assert result.verdict is Verdict.CONFLICTS
    assert result.conflicts[0].successor == "deleted"
    # unchanged by the user, the same path is a stale copy the successor's deletion wins over
    stale = check(
        layer(file("etc/old.conf", "REF")),
        ref={"etc/old.conf": b"REF"},
        fix=fix(LayerChange(deleted=("etc/old.conf",))),
    )
    assert classes(stale) == {"etc/old.conf": "stale copy"}
    assert stale.verdict is Verdict.SAFE_AFTER_MERGE


def test_a_file_under_a_folder_the_fix_made_opaque() -> None:
    result = check(
        layer(file("opt/tool/conf", "mine")),
        ref={"opt/tool/conf": b"REF"},
        fix=fix(LayerChange(opaque=("opt/tool",))),
    )
    assert result.verdict is Verdict.CONFLICTS


def test_a_whiteout_of_what_the_fix_added_or_changed() -> None:
    for backup in (layer(whiteout("etc/profile.d")), layer(overlay_whiteout("etc/profile.d"))):
        result = check(backup, fix=fix(LayerChange(files={"etc/profile.d/oom.sh": b"echo 900"})))
        assert result.verdict is Verdict.CONFLICTS
        assert "etc/profile.d/oom.sh" in result.conflicts[0].reason
    kept = check(
        layer(whiteout("etc/motd")), fix=fix(LayerChange(files={"etc/profile.d/oom.sh": b"x"}))
    )
    assert classes(kept) == {"etc/motd": "user only"}
    assert kept.verdict is Verdict.SAFE


def test_an_opaque_folder_hiding_what_the_fix_added() -> None:
    for backup in (
        layer(folder("etc/init"), opaque("etc/init")),
        layer(overlay_opaque("etc/init")),
    ):
        result = check(backup, fix=fix(LayerChange(files={"etc/init/oom": b"900"})))
        assert result.verdict is Verdict.CONFLICTS, backup
        assert [(p.path, p.kind, p.cls) for p in result.paths] == [
            ("etc/init", "opaque", Class.CONFLICT)
        ]  # one row for the folder, in either form
    assert (
        check(
            layer(folder("srv"), opaque("srv")), fix=fix(LayerChange(files={"etc/x": b""}))
        ).verdict
        is Verdict.SAFE
    )


def test_a_symlink_where_the_fix_changed_a_file() -> None:
    result = check(
        layer(symlink("start", "/bin/true")), fix=fix(LayerChange(files={"start": b"x"}))
    )
    assert result.verdict is Verdict.CONFLICTS
    assert "symlink" in result.conflicts[0].reason


def test_regenerated_caches_are_dropped() -> None:
    result = check(
        layer(
            file("etc/ld.so.cache", "user's cache"),
            file("var/cache/fontconfig/a-le64.cache-8", "f"),
        ),
        ref={"etc/ld.so.cache": b"REF cache"},
        fix=fix(LayerChange(files={"etc/ld.so.cache": b"fix's cache"})),
    )
    assert classes(result) == {
        "etc/ld.so.cache": "regenerated cache",
        "var/cache/fontconfig/a-le64.cache-8": "regenerated cache",
    }
    assert result.dropped == {"etc/ld.so.cache", "var/cache/fontconfig/a-le64.cache-8"}
    assert result.verdict is Verdict.SAFE_AFTER_MERGE  # the raw one would hide the fix's cache


def test_the_fix_set_merges_its_layers_bottom_first() -> None:
    changes = fix_changes(
        (
            LayerChange(files={"a/one": b"1", "b/two": b"2", "c": b"3"}),
            LayerChange(deleted=("a",), opaque=("b",), files={"b/new": b"n"}),
        )
    )
    assert changes.files == {"b/new": b"n", "c": b"3"}
    assert changes.removes("a/one")
    assert changes.removes("b/two")
    assert not changes.removes("b/new")
    assert not changes.removes("c")


# -- databases merged by entry -----------------------------------------------------------


def test_dpkg_status_merged_by_package() -> None:
    result = check(
        layer(file("var/lib/dpkg/status", STATUS_USER)),
        ref={"var/lib/dpkg/status": STATUS_REF},
        fix=fix(LayerChange(files={"var/lib/dpkg/status": STATUS_FIX})),
    )
    assert result.verdict is Verdict.SAFE_AFTER_MERGE
    assert classes(result) == {"var/lib/dpkg/status": "merged"}
    merged = result.merged_content["var/lib/dpkg/status"]
    assert b"Version: 3.0.15-1" in merged  # the fix's upgrade kept
    assert b"3.0.11-1" not in merged  # the raw backup would roll it back
    assert b"Package: curl" in merged  # the user's package kept
    (merge,) = result.merges
    assert merge.from_backup == ("package curl:amd64",)
    assert merge.from_successor == ("package libssl3:amd64",)


def test_a_package_both_changed_is_a_conflict() -> None:
    user = STATUS_REF.replace(b"3.0.11-1", b"3.0.11-1+local")
    result = check(
        layer(file("var/lib/dpkg/status", user)),
        ref={"var/lib/dpkg/status": STATUS_REF},
        fix=fix(LayerChange(files={"var/lib/dpkg/status": STATUS_FIX})),
    )
    assert result.verdict is Verdict.CONFLICTS
    (entry,) = result.conflicts[0].entries
    assert entry.entry == "package libssl3:amd64"
    assert "3.0.11-1+local" in entry.backup
    assert "3.0.15-1" in entry.successor


PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"


def test_users_added_on_both_sides_are_kept() -> None:
    user = PASSWD + b"alice:x:1000:1000::/home/alice:/bin/sh\n"
    fixed = PASSWD + b"oomd:x:999:999::/:/bin/false\n"
    result = check(
        layer(file("etc/passwd", user)),
        ref={"etc/passwd": PASSWD},
        fix=fix(LayerChange(files={"etc/passwd": fixed})),
    )
    assert result.verdict is Verdict.SAFE_AFTER_MERGE
    assert (
        result.merged_content["etc/passwd"] == fixed + b"alice:x:1000:1000::/home/alice:/bin/sh\n"
    )


def test_a_uid_given_to_two_users_is_a_conflict() -> None:
    user = PASSWD + b"alice:x:1000:1000::/home/alice:/bin/sh\n"
    fixed = PASSWD + b"oomd:x:1000:1000::/:/bin/false\n"
    result = check(
        layer(file("etc/passwd", user)),
        ref={"etc/passwd": PASSWD},
        fix=fix(LayerChange(files={"etc/passwd": fixed})),
    )
    assert result.verdict is Verdict.CONFLICTS
    (entry,) = result.conflicts[0].entries
    assert entry.entry == "uid 1000"
    assert entry.backup.startswith("alice:")
    assert entry.successor.startswith("oomd:")


def test_a_gid_collision_and_a_user_added_twice_differently() -> None:
    group = merge_accounts("group", id_label="gid")
    done = group(b"root:x:0:\n", b"root:x:0:\nstaff:x:50:\n", b"root:x:0:\noom:x:50:\n")
    assert [c.entry for c in done.conflicts] == ["gid 50"]
    passwd = merge_accounts("user", id_label="uid")
    done = passwd(
        PASSWD, PASSWD + b"svc:x:500:500::/:/bin/sh\n", PASSWD + b"svc:x:501:501::/:/bin/sh\n"
    )
    assert [c.entry for c in done.conflicts] == ["user svc"]
    assert "both sides added it" in done.conflicts[0].reason


def test_shadow_merged_by_name() -> None:
    shadow = merge_for("etc/shadow")
    assert shadow is not None
    done = shadow(
        b"root:*:1::::::\n", b"root:*:1::::::\nalice:!:2::::::\n", b"root:$y$new:3::::::\n"
    )
    assert done.content == b"root:$y$new:3::::::\nalice:!:2::::::\n"
    assert not done.conflicts


def test_a_user_removed_in_the_backup_stays_removed() -> None:
    passwd = merge_accounts("user", id_label="uid")
    done = passwd(
        PASSWD, b"root:x:0:0:root:/root:/bin/sh\n", PASSWD + b"oomd:x:999:999::/:/bin/false\n"
    )
    assert done.content == b"root:x:0:0:root:/root:/bin/sh\noomd:x:999:999::/:/bin/false\n"


def test_logs_both_appended_to() -> None:
    assert merge_for("var/log/apt/history.log") is merge_log
    assert merge_for("var/log/apt/eipp.log.xz") is merge_log
    assert merge_for("var/log/lastlog") is None  # indexed by uid: never appended to
    done = merge_log(b"a\n", b"a\nuser\n", b"a\nfix\n")
    assert done.content == b"a\nfix\nuser\n"
    assert merge_log(b"a\n", b"rotated\n", b"a\nfix\n").conflicts


# -- the merged layer ----------------------------------------------------------------------


def test_the_merged_layer_drops_stale_copies_and_holds_the_merged_databases() -> None:
    backup = layer(
        folder("var/lib/dpkg"),
        file("var/lib/dpkg/status", STATUS_USER),
        file("start", "REF start"),
        hardlink("start-too", "start"),
        file("home/u/notes", "mine"),
        overlay_whiteout("etc/motd"),
        overlay_opaque("srv"),
        folder("etc", **{"SCHILY.xattr.user.note": "kept"}),
    )
    result = check(
        backup,
        ref={"var/lib/dpkg/status": STATUS_REF, "start": b"REF start"},
        fix=fix(LayerChange(files={"var/lib/dpkg/status": STATUS_FIX, "start": b"fixed"})),
    )
    assert result.verdict is Verdict.SAFE_AFTER_MERGE
    out = io.BytesIO()
    write_layer_tar(
        io.BytesIO(backup),
        out,
        dropped=result.dropped,
        replaced=result.merged_content,
        name="backup.tar",
    )
    written = members(out.getvalue())
    assert "start" not in written  # stale: the successor's start-up script wins
    assert written["start-too"].isreg()  # a hard link to a dropped file is a file of its own
    assert content(out.getvalue(), "start-too") == b"REF start"
    assert (
        content(out.getvalue(), "var/lib/dpkg/status")
        == result.merged_content["var/lib/dpkg/status"]
    )
    assert content(out.getvalue(), "home/u/notes") == b"mine"
    assert "etc/.wh.motd" in written
    assert "etc/motd" not in written
    assert "srv/.wh..wh..opq" in written
    assert not any("overlay" in key for key in written["srv"].pax_headers)
    assert written["etc"].pax_headers.get("SCHILY.xattr.user.note") == "kept"
    # and the written layer reads back as what was kept, in the OCI form
    again = read(out.getvalue())
    assert again.form == "oci"
    assert again.deleted == ("etc/motd",)
    assert again.opaque == ("srv",)


def test_fix_changes_accepts_no_layers() -> None:
    empty: FixChanges = fix_changes(())
    assert (
        check_restore(read(layer(file("a", "b"))), ref_files={}, fix=empty).verdict is Verdict.SAFE
    )


# -- symlinks in the fix's change set --------------------------------------------------------


def test_a_symlink_both_set_differently_and_one_set_alike() -> None:
    fixed = fix(LayerChange(links={"etc/alternatives/pager": "/usr/bin/less"}))
    result = check(layer(symlink("etc/alternatives/pager", "/bin/more")), fix=fixed)
    assert result.verdict is Verdict.CONFLICTS
    assert result.conflicts[0].successor == "symlink -> /usr/bin/less"
    same = check(layer(symlink("etc/alternatives/pager", "/usr/bin/less")), fix=fixed)
    assert classes(same) == {"etc/alternatives/pager": "stale copy"}
    assert same.verdict is Verdict.SAFE


def test_a_file_the_fix_made_a_symlink() -> None:
    fixed = fix(LayerChange(links={"etc/resolv.conf": "/run/resolv.conf"}))
    edited = check(
        layer(file("etc/resolv.conf", "mine")), ref={"etc/resolv.conf": b"REF"}, fix=fixed
    )
    assert edited.verdict is Verdict.CONFLICTS
    stale = check(layer(file("etc/resolv.conf", "REF")), ref={"etc/resolv.conf": b"REF"}, fix=fixed)
    assert classes(stale) == {"etc/resolv.conf": "stale copy"}
    assert stale.verdict is Verdict.SAFE_AFTER_MERGE  # the copy would hide the fix's symlink


def test_a_whiteout_of_a_symlink_the_fix_added() -> None:
    result = check(
        layer(whiteout("usr/local/bin")),
        fix=fix(LayerChange(links={"usr/local/bin/oom": "/start"})),
    )
    assert result.verdict is Verdict.CONFLICTS


def test_later_layers_replace_files_with_symlinks_and_back() -> None:
    changes = fix_changes(
        (
            LayerChange(files={"a": b"1"}, links={"b": "x"}),
            LayerChange(files={"b": b"2"}, links={"a": "y"}),
        )
    )
    assert changes.files == {"b": b"2"}
    assert changes.links == {"a": "y"}


def test_the_overlay2_store_reads_a_layers_symlinks(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "motd").write_text("hi")
    (tmp_path / "etc" / "pager").symlink_to("/usr/bin/less")
    everything = FileSelection(match=lambda _p: True, globs=("*",))
    change = read_layer(tmp_path, everything)
    assert change is not None
    assert change.links == {"etc/pager": "/usr/bin/less"}
    assert change.files == {"etc/motd": b"hi"}


def test_only_the_fix_files_the_check_needs_are_read() -> None:
    wanted = relevant_to(
        read(layer(file("etc/app.conf", "x"), whiteout("opt/tool"), opaque("srv")))
    )
    assert wanted("etc/app.conf")  # the backup's own path
    assert wanted("etc")  # a folder above it, where the fix may have put a file
    assert wanted("opt/tool/bin/run")  # below a whiteout: the fix may have added it
    assert wanted("srv/index.html")  # below an opaque folder
    assert not wanted("usr/lib/x86_64-linux-gnu/libssl.so.3")  # the rest of the fix
    assert not wanted("etc/app.conf.d/extra")


def test_a_folder_where_the_fix_put_a_symlink() -> None:
    fixed = fix(LayerChange(links={"var/run": "/run"}))
    result = check(layer(folder("var/run"), file("var/run/app.pid", "1")), fix=fixed)
    assert result.verdict is Verdict.CONFLICTS
    assert [c.path for c in result.conflicts] == ["var/run", "var/run/app.pid"]
    assert result.conflicts[0].successor == "symlink -> /run"


def test_a_hard_link_named_another_way_than_its_target() -> None:
    backup = layer(file("./bin/a", "REF a"), hardlink("bin/b", "./bin/a"))
    result = check(backup, ref={"bin/a": b"REF a"}, fix=fix(LayerChange(files={"bin/a": b"new a"})))
    assert result.dropped == {"bin/a"}
    out = io.BytesIO()
    write_layer_tar(io.BytesIO(backup), out, dropped=result.dropped, replaced={}, name="b.tar")
    assert set(members(out.getvalue())) == {"bin/b"}
    assert content(out.getvalue(), "bin/b") == b"REF a"


# -- mode and owner ------------------------------------------------------------------------

PLAIN = (0o644, 0, 0)  # the default of tests/layer_tars' files
REF_CONF = {"etc/app.conf": b"REF"}


def test_a_mode_only_change_of_a_file_the_fix_changed_is_a_conflict() -> None:
    fixed = fix(LayerChange(files={"etc/app.conf": b"fix"}, meta={"etc/app.conf": PLAIN}))
    result = check(
        layer(file("etc/app.conf", "REF", mode=0o600)),
        ref=REF_CONF, ref_meta={"etc/app.conf": PLAIN}, fix=fixed,
    )  # fmt: skip
    assert result.verdict is Verdict.CONFLICTS
    (conflict,) = result.conflicts
    assert conflict.reason == (
        "the fix changed it, and the backup changed only its mode or owner (mode 0644, owner "
        "0:0 in REF, mode 0600, owner 0:0 in the backup)"
    )
    assert result.dropped == frozenset()
    # the same copy with REF's mode and owner is stale: the successor's file wins
    same = check(
        layer(file("etc/app.conf", "REF")),
        ref=REF_CONF, ref_meta={"etc/app.conf": PLAIN}, fix=fixed,
    )  # fmt: skip
    assert same.dropped == {"etc/app.conf"}


def test_an_owner_only_change_of_a_file_the_fix_deleted_is_a_conflict() -> None:
    result = check(
        layer(file("etc/app.conf", "REF", uid=1000, gid=1000)),
        ref=REF_CONF, ref_meta={"etc/app.conf": PLAIN}, fix=fix(LayerChange(deleted=("etc",))),
    )  # fmt: skip
    assert classes(result) == {"etc/app.conf": "conflict"}
    assert "the fix deleted it, and the backup changed only its mode or owner" in (
        result.conflicts[0].reason
    )


def test_a_mode_or_owner_change_of_a_file_the_fix_left_alone_is_the_user_s_and_kept() -> None:
    result = check(
        layer(file("etc/app.conf", "REF", mode=0o600, uid=1000)),
        ref=REF_CONF, ref_meta={"etc/app.conf": PLAIN},
        fix=fix(LayerChange(files={"start": b"fixed"})),
    )  # fmt: skip
    assert classes(result) == {"etc/app.conf": "user only"}
    assert result.verdict is Verdict.SAFE
    assert result.dropped == frozenset()


def test_the_successor_s_content_with_the_user_s_own_mode() -> None:
    """The backup has the fix's content: stale when it also has the fix's mode (or REF's,
    which the user did not change); a conflict when the user set a mode the fix does not."""
    fixed = fix(LayerChange(files={"etc/app.conf": b"fix"}, meta={"etc/app.conf": (0o640, 0, 0)}))

    def with_mode(mode: int) -> RestoreCheck:
        backup = layer(file("etc/app.conf", "fix", mode=mode))
        return check(backup, ref=REF_CONF, ref_meta={"etc/app.conf": PLAIN}, fix=fixed)

    assert with_mode(0o640).dropped == {"etc/app.conf"}  # the fix's own mode
    assert with_mode(0o644).dropped == {"etc/app.conf"}  # REF's: the user set none
    mine = with_mode(0o600)
    assert classes(mine) == {"etc/app.conf": "conflict"}
    assert "changed only its mode or owner" in mine.conflicts[0].reason


def test_without_ref_s_mode_and_owner_the_content_decides() -> None:
    """A reader container says no mode or owner: compared by content, as before."""
    result = check(
        layer(file("etc/app.conf", "REF", mode=0o600)),
        ref=REF_CONF, fix=fix(LayerChange(files={"etc/app.conf": b"fix"})),
    )  # fmt: skip
    assert classes(result) == {"etc/app.conf": "stale copy"}


def test_the_fix_s_layers_mode_and_owner_merged_bottom_first() -> None:
    changes = fix_changes(
        (
            LayerChange(files={"a": b"1", "b": b"2"}, meta={"a": PLAIN, "b": PLAIN}),
            LayerChange(files={"a": b"1"}, meta={"a": (0o755, 0, 0)}, deleted=("b",)),
        )
    )
    assert changes.meta == {"a": (0o755, 0, 0)}


# -- folders the fix made ------------------------------------------------------------------


def check_folders(
    backup: bytes, fixed: tuple[LayerChange, ...], ref_dirs: frozenset[str] | None
) -> RestoreCheck:
    return check_restore(read(backup), ref_files={}, ref_dirs=ref_dirs, fix=fix_changes(fixed))


def test_an_opaque_folder_that_hides_a_folder_the_fix_made_is_a_conflict() -> None:
    backup = layer(folder("etc/conf.d"), opaque("etc/conf.d"), file("etc/conf.d/a", "mine"))
    fixed = fix(LayerChange(dirs=("etc", "etc/conf.d", "etc/conf.d/hooks.d")))
    assert folders_to_ask(read(backup), fix_changes(fixed)) == {"etc/conf.d/hooks.d"}
    result = check_folders(backup, fixed, ref_dirs=frozenset())
    assert classes(result)["etc/conf.d"] == "conflict"
    (conflict,) = result.conflicts
    assert conflict.reason.endswith("in it: etc/conf.d/hooks.d/")
    # a folder REF had already (the fix's layer holds it for a change of its own): no conflict
    assert check_folders(backup, fixed, ref_dirs=frozenset({"etc/conf.d/hooks.d"})).conflicts == ()
    # REF's folders not known (a reader container): none is taken as made by the fix
    assert check_folders(backup, fixed, ref_dirs=None).conflicts == ()


def test_a_whiteout_of_a_folder_in_which_the_fix_made_one_is_a_conflict() -> None:
    backup = layer(whiteout("opt/tool"))
    fixed = fix(LayerChange(dirs=("opt", "opt/tool", "opt/tool/plugins")))
    result = check_folders(backup, fixed, ref_dirs=frozenset({"opt", "opt/tool"}))
    assert classes(result) == {"opt/tool": "conflict"}
    assert result.conflicts[0].successor == "opt/tool/plugins/"


def test_a_file_where_the_fix_made_a_folder_is_a_conflict() -> None:
    backup = layer(folder("srv"), file("srv/data", "mine"))
    fixed = fix(LayerChange(dirs=("srv", "srv/data")))
    result = check_folders(backup, fixed, ref_dirs=frozenset({"srv"}))
    assert classes(result) == {"srv": "directory", "srv/data": "conflict"}
    assert "where the fix made a folder" in result.conflicts[0].reason
    # the backup's own folder where the fix made one: the two folders merge
    both = layer(folder("srv"), folder("srv/data"), file("srv/data/x", "mine"))
    assert check_folders(both, fixed, ref_dirs=frozenset({"srv"})).conflicts == ()


def test_the_fix_s_folders_merged_bottom_first() -> None:
    changes = fix_changes(
        (
            LayerChange(dirs=("a", "a/b", "c", "d")),
            LayerChange(deleted=("a",), files={"c": b"now a file"}),
            LayerChange(links={"e": "/x"}),
            LayerChange(dirs=("e",)),  # a folder where a symlink was
        )
    )
    assert changes.dirs == {"d", "e"}
    assert changes.links == {}
    assert merged_dirs(
        (
            LayerChange(dirs=("a", "a/b", "s", "s/t", "f")),
            LayerChange(deleted=("a",), opaque=("s",), files={"f": b"1"}),
        )
    ) == {"s"}
