"""The workspace: cases, observations, detections, documents in one DuckDB file under TTPSCOPE_HOME.

    from ttpscope.store import Workspace
    ws = Workspace()                       # <TTPSCOPE_HOME>/workspace.duckdb
    ws.save_case(case, detections, documents)
    ws.get_case("intrusion-42")            # by id or by name
    ws.add_to_case("intrusion-42", observations)   # what `--case NAME` options use
"""

from ttpscope.store.workspace import Workspace, default_path

__all__ = ["Workspace", "default_path"]
