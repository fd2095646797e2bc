"""MovieLens: local folders, titles, verified downloads (local server), cache, offline errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from walsrec.data import load_movielens, load_source, movielens
from walsrec.errors import ConfigError, DataError


def test_ml100k_folder_loads_all_ratings_users_items_and_titles(ml100k_dir):
    result = load_source(ml100k_dir)
    frame = result.frame
    assert len(frame) == 100_000
    assert frame["user_id"].nunique() == 943
    assert frame["item_id"].nunique() == 1_682
    assert result.report.rows_read == 100_000 and result.report.rejected == {}
    assert result.has_ratings and result.has_timestamps
    assert result.item_titles["1"] == "Toy Story (1995)"
    assert len(result.item_titles) == 1_682
    # u.item is latin-1: accented titles must decode, not turn into replacement characters.
    assert any("é" in title for title in result.item_titles.values())
    assert not any("\ufffd" in title for title in result.item_titles.values())


def test_ml1m_and_latest_layouts_with_titles(tmp_path):
    ml1m = tmp_path / "ml-1m"
    ml1m.mkdir()
    (ml1m / "ratings.dat").write_text("1::1193::5::978300760\n2::1193::9::978300761\n")
    (ml1m / "movies.dat").write_bytes("1193::Caf\xe9 (1975)::Drama\n".encode("latin-1"))
    result = load_source(tmp_path)  # the parent folder: the layout is found one level down
    assert result.item_titles == {"1193": "Café (1975)"}
    assert result.report.rejected == {"rating out of range": 1}  # ml-1m ratings are 1..5

    small = tmp_path / "small"
    small.mkdir()
    (small / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,0.5,964982703\n")
    (small / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story, The (1995)",Comedy\n')
    result = load_source(small)
    assert result.frame["rating"].tolist() == [0.5]
    assert result.item_titles == {"1": "Toy Story, The (1995)"}


def test_load_source_errors_name_the_spec(tmp_path):
    with pytest.raises(DataError, match=r"data source 'no-such-thing' not found.*ml-100k"):
        load_source("no-such-thing")
    with pytest.raises(DataError, match="folder holds no MovieLens ratings file"):
        load_source(tmp_path)
    with pytest.raises(ConfigError, match="unknown MovieLens variant 'ml-5k'"):
        load_movielens("ml-5k")


def _zip_of(folder: Path, destination: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(destination, "w") as bundle:
        for name in names:
            bundle.write(folder / name, f"ml-100k/{name}")
    return destination


@pytest.fixture
def file_server(tmp_path):
    """Serves tmp_path/served over HTTP on localhost; yields (base_url, served_dir, hit log)."""
    served = tmp_path / "served"
    served.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, hits
    server.shutdown()
    server.server_close()


def _point_variant(monkeypatch, **changes) -> None:
    variant = dataclasses.replace(movielens.VARIANTS["ml-100k"], **changes)
    monkeypatch.setitem(movielens.VARIANTS, "ml-100k", variant)


def test_download_is_verified_cached_and_reused(ml100k_dir, tmp_path, file_server, monkeypatch):
    base_url, served, hits = file_server
    archive = _zip_of(ml100k_dir, served / "ml-100k.zip", ["u.data", "u.item"])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    _point_variant(monkeypatch, url=f"{base_url}/ml-100k.zip", sha256=digest)
    cache = tmp_path / "cache"

    first = load_movielens("ml-100k", cache_dir=cache)
    assert len(first.frame) == 100_000
    assert first.item_titles["1"] == "Toy Story (1995)"
    cached = cache / "movielens" / "ml-100k.zip"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    assert len(hits) == 1
    assert not list(cached.parent.glob("*.part"))

    # Second load: no request, even with the server gone and downloads off.
    _point_variant(monkeypatch, url="http://127.0.0.1:9/ml-100k.zip", sha256=digest)
    second = load_source("ml-100k", cache_dir=cache, download=False)
    assert len(second.frame) == 100_000
    assert len(hits) == 1


def test_checksum_mismatch_caches_nothing(ml100k_dir, tmp_path, file_server, monkeypatch):
    base_url, served, _ = file_server
    (served / "ml-100k.zip").write_bytes(b"not the real archive")
    _point_variant(monkeypatch, url=f"{base_url}/ml-100k.zip")  # keeps the pinned sha256
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch for ml-100k") as info:
        load_movielens("ml-100k", cache_dir=cache)
    assert movielens.VARIANTS["ml-100k"].sha256 in str(info.value)
    assert list((cache / "movielens").iterdir()) == []


def test_corrupt_cached_archive_is_replaced(ml100k_dir, tmp_path, file_server, monkeypatch):
    base_url, served, hits = file_server
    archive = _zip_of(ml100k_dir, served / "ml-100k.zip", ["u.data"])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    _point_variant(monkeypatch, url=f"{base_url}/ml-100k.zip", sha256=digest)
    cache = tmp_path / "cache"
    (cache / "movielens").mkdir(parents=True)
    (cache / "movielens" / "ml-100k.zip").write_bytes(b"truncated")
    assert len(load_movielens("ml-100k", cache_dir=cache).frame) == 100_000
    assert len(hits) == 1


def test_offline_download_is_one_clear_error(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9/ml-100k.zip"
    _point_variant(monkeypatch, url=url)
    with pytest.raises(DataError) as info:
        load_source("ml-100k", cache_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"could not download ml-100k from {url} (")
    assert message.endswith(
        "pass a local copy with --data PATH (or `data.source` in the YAML config)"
    )
    assert "\n" not in message


def test_download_off_and_not_cached(tmp_path):
    with pytest.raises(DataError, match="ml-1m is not in the cache .* downloading is off"):
        load_movielens("ml-1m", cache_dir=tmp_path, download=False)


def test_local_zip_must_be_the_official_archive(ml100k_dir, tmp_path):
    archive = _zip_of(ml100k_dir, tmp_path / "ml-100k.zip", ["u.data"])
    with pytest.raises(DataError, match="not the official ml-100k archive"):
        load_movielens("ml-100k", local_path=archive, cache_dir=tmp_path / "cache")
    assert len(load_movielens("ml-100k", local_path=ml100k_dir).frame) == 100_000
