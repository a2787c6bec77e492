"""tools/deps.py: umqtt.simple 1.3.4 is used only if its archive has the pinned sha256; a cache
serves offline machines; only the one module is written. No network: archives come from the
project's own cache (`make` fetched it) through a folder or a file:// URL."""

import io
import os
import tarfile

import pytest

from tools import deps


@pytest.fixture(scope="module")
def good_archive():
    """The pinned archive's bytes, as `make` left them in .deps/cache (fetched if missing)."""
    deps.ensure()
    path = os.path.join(deps.DEST, "cache", deps.ARCHIVE)
    with open(path, "rb") as f:
        return f.read()


def _tampered(data):
    """The same archive with one byte of umqtt/simple.py changed (a valid tar.gz)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src, \
            tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src.getmembers():
            body = src.extractfile(member).read()
            if member.name == deps.MEMBER:
                body = body.replace(b"MQTTClient", b"MQTTClienT", 1)
            dst.addfile(member, io.BytesIO(body))
    return out.getvalue()


def test_from_a_cache_folder_without_network(good_archive, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / deps.ARCHIVE).write_bytes(good_archive)
    dest = tmp_path / "deps"
    path = deps.ensure(cache=str(cache), dest=str(dest), url="file:///nonexistent")
    assert path == os.path.join(str(dest), "umqtt", "simple.py")
    assert deps.is_current(str(dest))
    assert sorted(os.listdir(dest)) == ["umqtt"]  # nothing else of the archive
    # up to date: no archive needed at all
    (cache / deps.ARCHIVE).unlink()
    assert deps.ensure(cache=str(cache), dest=str(dest), url="file:///nonexistent") == path


def test_a_download_with_the_wrong_hash_is_refused(good_archive, tmp_path):
    bad = tmp_path / deps.ARCHIVE
    bad.write_bytes(_tampered(good_archive))
    dest = tmp_path / "deps"
    with pytest.raises(deps.DepsError, match="refusing it"):
        deps.ensure(cache=str(tmp_path / "empty"), dest=str(dest), url=bad.as_uri())
    assert not os.path.exists(deps.module_path(str(dest)))


def test_a_tampered_cache_is_ignored_and_a_good_download_used(good_archive, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / deps.ARCHIVE).write_bytes(_tampered(good_archive))
    source = tmp_path / "mirror" / deps.ARCHIVE
    source.parent.mkdir()
    source.write_bytes(good_archive)
    dest = tmp_path / "deps"
    deps.ensure(cache=str(cache), dest=str(dest), url=source.as_uri())
    assert deps.is_current(str(dest))
    assert "ignored" in capsys.readouterr().err
    # the verified download is kept in dest/cache for the next run
    assert (dest / "cache" / deps.ARCHIVE).read_bytes() == good_archive


def test_a_modified_extracted_module_is_replaced(good_archive, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / deps.ARCHIVE).write_bytes(good_archive)
    dest = str(tmp_path / "deps")
    path = deps.ensure(cache=str(cache), dest=dest)
    with open(path, "a") as f:
        f.write("# local edit\n")
    assert not deps.is_current(dest)
    deps.ensure(cache=str(cache), dest=dest)
    assert deps.is_current(dest)


def test_the_project_copy_is_the_pinned_one():
    """What the build compiles into the image and CPython imports."""
    deps.ensure()
    assert deps.is_current()
    import importlib

    importlib.import_module("firmware.mqtt")  # first: on CPython it puts .deps on sys.path
    simple = importlib.import_module("umqtt.simple")
    assert os.path.samefile(simple.__file__, deps.module_path())
