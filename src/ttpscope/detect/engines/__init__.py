"""Engines: compiled Sigma rules × event batches → hits. One registry, one interface (:class:`Engine`).

    from ttpscope.detect.engines import make_engine
    engine = make_engine("duckdb", compiled, python_rows=0)   # options are the engine's own
    hits = list(engine.run(reader.batches()))

- ``duckdb`` (:mod:`.duckdb`): an embedded DuckDB for big classes, Arrow kernels for small ones (default);
- ``arrow`` (:mod:`.arrow`): Arrow compute kernels only;
- ``spark`` (:mod:`.spark`): Apache Spark over Parquet (needs the ``[spark]`` extra and a Java runtime).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ttpscope.detect.engines.arrow import ArrowEngine
from ttpscope.detect.engines.base import Engine, RawHit
from ttpscope.detect.engines.duckdb import DuckDBEngine
from ttpscope.detect.engines.spark import SparkEngine

ENGINES: dict[str, Callable[..., Engine]] = {"duckdb": DuckDBEngine, "arrow": ArrowEngine, "spark": SparkEngine}


def make_engine(name: str, compiled: Iterable, **options: Any) -> Engine:
    """The engine ``name`` for these compiled rules, with its own options."""
    return ENGINES[name](compiled, **options)


__all__ = ["ENGINES", "ArrowEngine", "DuckDBEngine", "Engine", "RawHit", "SparkEngine", "make_engine"]
