"""Bundle sources against real servers on loopback: URL download + cache, `kb update` from an
attack-stix-data mirror (the real collection index), the offline path, and a live TAXII 2.1 server."""

import os
import shutil

import orjson
import pytest

from kb_servers import StaticServer, TaxiiServer, free_port
from ttpscope.errors import OfflineError
from ttpscope.kb import load_kb
from ttpscope.kb.sources import update


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    import ttpscope.kb as kbmod

    kbmod._loaded.clear()
    yield tmp_path / "home"
    kbmod._loaded.clear()


@pytest.fixture
def mirror(tmp_path, shared_data):
    """A folder laid out like attack-stix-data: index.json + ics-attack/ics-attack-18.1.json."""
    root = tmp_path / "mirror"
    (root / "ics-attack").mkdir(parents=True)
    shutil.copy(shared_data / "attack" / "index.json", root / "index.json")
    os.symlink(shared_data / "attack" / "ics-attack-18.1.json", root / "ics-attack" / "ics-attack-18.1.json")
    return root


def test_url_bundle_downloads_once_then_comes_from_cache(home, mirror):
    with StaticServer(mirror) as server:
        url = f"{server.url}/ics-attack/ics-attack-18.1.json"
        kb = load_kb("ics", url)
        assert kb.version == "18.1" and kb.source == url
        assert len(kb.detection_strategies) > 50
        assert server.requests.count("/ics-attack/ics-attack-18.1.json") == 1
    # the server is gone: the cached copy answers
    import ttpscope.kb as kbmod

    kbmod._loaded.clear()
    assert load_kb("ics", url).version == "18.1"


def test_update_fetches_newest_release_from_index(home, mirror):
    with StaticServer(mirror) as server:
        done = update(("ics",), mirror=server.url)
        assert server.requests[0] == "/index.json"
    assert done["ics"]["version"] == "18.1"
    kb = load_kb("ics")  # default now = the updated release
    assert kb.version == "18.1" and "attack-stix-data" in kb.source
    assert load_kb("ics", "embedded").version == "15.1"


def test_offline_says_so(home):
    port = free_port()  # nothing listens there
    with pytest.raises(OfflineError, match="cannot reach"):
        update(("enterprise",), index_url=f"http://127.0.0.1:{port}/index.json")
    with pytest.raises(OfflineError, match=f"127.0.0.1:{port}"):
        load_kb("enterprise", f"http://127.0.0.1:{port}/enterprise-attack.json")


def test_taxii_collection_against_live_medallion(home, tmp_path, shared_data, monkeypatch):
    objects = orjson.loads((shared_data / "attack" / "ics-attack-18.1.json").read_bytes())["objects"]
    server = TaxiiServer(tmp_path)
    try:
        server.add_objects(objects)
        monkeypatch.setenv("TTPSCOPE_TAXII_USER", server.USER)
        monkeypatch.setenv("TTPSCOPE_TAXII_PASSWORD", server.PASSWORD)
        kb = load_kb("ics", "taxii+" + server.collection_url)
    finally:
        server.close()
    assert kb.domain == "ics" and kb.version == "18.1"
    assert kb.technique("T0807").name == "Command-Line Interface"
    assert len(kb.techniques) == len([o for o in objects if o["type"] == "attack-pattern"])
    assert kb.group("Sandworm Team").id == "G0034"
