"""A local STAC API over pgSTAC, served by stac-fastapi-pgstac.

The catalog lives in a PostgreSQL database whose ``pgstac`` schema is installed and upgraded by
pypgstac's own migrations (`prepare_database`), and is filled with pypgstac's loader
(`load_catalog`). Requests are answered by stac-fastapi-pgstac's application
(`stac_fastapi.pgstac.app.instantiate_api`) run by uvicorn (`serve`, `running_server`);
nothing in this module answers a STAC request itself.

Typical use::

    sock = bind_port("127.0.0.1", 8081)  # a busy port fails here, before any other work
    conn = PgConnection()
    prepare_database(conn)
    load_catalog(conn, [collection], items)
    serve(conn, sock)  # blocks

Settings are passed to stac-fastapi-pgstac explicitly (`stac_fastapi.pgstac.config.Settings` and
`PostgresSettings`), so the process environment is neither read for the database nor modified.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from kz_pipelines.errors import UserFacingError

# stac-fastapi logs a note about its own default settings when imported; ours are set explicitly
logging.getLogger("stac_fastapi.types.config").setLevel(logging.ERROR)

from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pypgstac.migrate import Migrate
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, Settings
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions

__all__ = [
    "ENABLED_EXTENSIONS",
    "MissingPostgisError",
    "PgConnection",
    "PortInUseError",
    "ServerStartError",
    "bind_port",
    "create_app",
    "load_catalog",
    "prepare_database",
    "running_server",
    "serve",
]

logger = logging.getLogger(__name__)

ENABLED_EXTENSIONS: tuple[str, ...] = ("query", "filter", "sort", "fields", "pagination")
"""stac-fastapi-pgstac extension keys turned on for ``/search`` and ``/collections/{id}/items``.

``query`` is the STAC Query extension, ``filter`` CQL2 (text and JSON), ``pagination`` the
token paging that ``next`` links rely on. Transactions stay off: the API is read-only and
data go in through `load_catalog`.
"""

_STARTUP_TIMEOUT_S = 30.0
_SHUTDOWN_TIMEOUT_S = 10.0


class PortInUseError(UserFacingError, OSError):
    """The TCP port the server should listen on is already bound by another socket."""


class MissingPostgisError(UserFacingError, RuntimeError):
    """The PostGIS extension is not installed on the PostgreSQL server."""


class ServerStartError(UserFacingError, RuntimeError):
    """The STAC server did not come up (startup failed or it did not answer in time)."""


@dataclass(frozen=True)
class PgConnection:
    """Where the pgSTAC database lives.

    Attributes:
        host: PostgreSQL host name or address.
        port: PostgreSQL port.
        user: role to connect as (needs the right to create databases and extensions).
        password: its password; empty for trust or peer authentication.
        dbname: the database holding the ``pgstac`` schema.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    dbname: str = "kz_stac"

    @property
    def dsn(self) -> str:
        """libpq connection URI, e.g. ``postgresql://postgres@127.0.0.1:5432/kz_stac``."""
        return self._uri(self.dbname)

    def _uri(self, dbname: str) -> str:
        """Connection URI for another database on the same server."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(dbname, safe='')}"


@contextmanager
def _pgstac_db(conn: PgConnection) -> Iterator[PgstacDB]:
    """A `PgstacDB` whose connection pool is closed on exit."""
    db = PgstacDB(dsn=conn.dsn)
    try:
        yield db
    finally:
        pool = db.pool
        db.disconnect()
        if pool is not None:
            pool.close()


def prepare_database(conn: PgConnection) -> None:
    """Create the database if needed, enable PostGIS and install or upgrade pgSTAC.

    Idempotent: an existing database is kept, and the pgSTAC migration is a no-op when the
    schema is already at pypgstac's version.

    Args:
        conn: the database to prepare; the server's ``postgres`` database is used to create it.

    Raises:
        MissingPostgisError: PostGIS is not installed on the server (the message names the
            Debian package to install).
        psycopg.OperationalError: the server cannot be reached.
    """
    with psycopg.connect(conn._uri("postgres"), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (conn.dbname,)).fetchone()
        if exists is None:
            try:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(conn.dbname)))
                logger.info("created database %s", conn.dbname)
            except psycopg.errors.DuplicateDatabase:
                pass  # created concurrently by someone else

    with psycopg.connect(conn.dsn, autocommit=True) as db:
        try:
            db.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            major = db.info.server_version // 10000
            raise MissingPostgisError(
                f"cannot enable PostGIS in database {conn.dbname!r} ({exc}); install the Debian "
                f"package postgresql-{major}-postgis-3 (apt-get install -y postgresql-{major}-postgis-3)"
            ) from exc

    with _pgstac_db(conn) as pgdb:
        version = Migrate(pgdb).run_migration()
    logger.info("pgstac schema in %s is at version %s", conn.dbname, version)


def load_catalog(conn: PgConnection, collections: list[dict[str, Any]], items: list[dict[str, Any]]) -> int:
    """Upsert STAC collections and items into the pgSTAC database.

    Collections are loaded first (so items can be partitioned under them), both with pypgstac's
    ``upsert`` mode: loading the same objects again replaces them instead of duplicating or
    failing. Asset hrefs are stored as given.

    Args:
        conn: a database prepared by `prepare_database`.
        collections: STAC Collection dicts.
        items: STAC Item dicts; each ``collection`` must be among ``collections`` or already
            in the database.

    Returns:
        The number of items loaded.
    """
    with _pgstac_db(conn) as pgdb:
        loader = Loader(db=pgdb)
        if collections:
            loader.load_collections(iter(collections), insert_mode=Methods.upsert)
        if items:
            loader.load_items(iter(items), insert_mode=Methods.upsert)
    return len(items)


def create_app(conn: PgConnection, *, title: str = "kz-pipelines STAC API") -> FastAPI:
    """Build stac-fastapi-pgstac's FastAPI application for the database ``conn``.

    Uses `stac_fastapi.pgstac.app.instantiate_api` with explicit `Settings` (the extensions in
    `ENABLED_EXTENSIONS`, no transactions) and a lifespan that opens stac-fastapi-pgstac's
    asyncpg pool with explicit `PostgresSettings`, so no ``PG*`` environment variable is needed.

    Args:
        conn: a database prepared by `prepare_database`.
        title: the API title on the landing page.

    Returns:
        The ASGI application.
    """
    settings = Settings(
        _env_file=None,
        stac_fastapi_title=title,
        stac_fastapi_description="Sentinel-1/Sentinel-2 scenes indexed by kz-pipelines.",
        stac_fastapi_landing_id="kz-pipelines-stac",
        stac_fastapi_version="1.0.0",
        enabled_extensions=list(ENABLED_EXTENSIONS),
        enable_transactions_extensions=False,
    )
    pg_settings = PostgresSettings(
        _env_file=None,
        pguser=conn.user,
        pgpassword=conn.password,
        pghost=conn.host,
        pgport=conn.port,
        pgdatabase=conn.dbname,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await connect_to_db(app, postgres_settings=pg_settings)
        except Exception as exc:
            app.state.startup_error = exc  # for running_server's error message
            raise
        try:
            yield
        finally:
            await close_db_connection(app)

    api = instantiate_api(extensions=Extensions(settings=settings), lifespan=lifespan, settings=settings)
    return api.app


def bind_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)``; port 0 picks a free one.

    Raises:
        PortInUseError: another socket already holds the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            err = PortInUseError(f"port {port} on {host} is already in use")
            err.errno = errno.EADDRINUSE
            raise err from None
        raise
    return sock


def _uvicorn_server(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Server:
    """A uvicorn server for ``app`` (websockets off: the API does not use them)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", ws="none")
    return uvicorn.Server(config)


def serve(conn: PgConnection, sock: socket.socket, log_level: str = "info") -> None:
    """Serve the STAC API on an already bound socket until interrupted (blocking); closes the socket.

    Bind first with `bind_port`, so that a busy port fails before any other work.

    Args:
        conn: a database prepared by `prepare_database`.
        sock: a socket from `bind_port`.
        log_level: uvicorn log level.
    """
    try:
        host, bound_port = sock.getsockname()[:2]
        server = _uvicorn_server(create_app(conn), host, bound_port, log_level)
        logger.info("serving the STAC API of database %s on %s", conn.dbname, _base_url(host, bound_port))
        server.run(sockets=[sock])
    finally:
        sock.close()


def _base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 literals bracketed)."""
    url_host = f"[{host}]" if ":" in host else host
    return f"http://{url_host}:{port}"


def _url_answers(url: str) -> bool:
    """Whether ``GET url`` returns 200."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def running_server(
    conn: PgConnection,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_s: float = _STARTUP_TIMEOUT_S,
    log_level: str = "warning",
) -> Iterator[str]:
    """Run the STAC API in a background thread for the duration of a ``with`` block.

    Args:
        conn: a database prepared by `prepare_database`.
        host: address to listen on.
        port: TCP port; 0 picks a free one.
        startup_timeout_s: how long to wait for ``GET {url}/`` to answer 200.
        log_level: uvicorn log level.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:40123``.

    Raises:
        PortInUseError: the port is already bound.
        ServerStartError: the server exited during startup (e.g. the database is unreachable;
            uvicorn logs the cause) or did not answer within ``startup_timeout_s``.
    """
    sock = bind_port(host, port)
    bound_port = sock.getsockname()[1]
    try:
        app = create_app(conn)
        server = _uvicorn_server(app, host, bound_port, log_level)
    except BaseException:
        sock.close()
        raise
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit on a failed lifespan startup
            failure.append(exc)

    url = _base_url(host, bound_port)
    thread = threading.Thread(target=target, name=f"stac-server-{bound_port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if not thread.is_alive():
                error = getattr(app.state, "startup_error", None) or (failure[0] if failure else None)
                cause = f": {error!r}" if error is not None else ""
                raise ServerStartError(f"STAC server on {url} exited during startup{cause}; see its log")
            if server.started and _url_answers(url + "/"):
                break
            if time.monotonic() > deadline:
                raise ServerStartError(f"STAC server on {url} did not answer within {startup_timeout_s:g} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(_SHUTDOWN_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_SHUTDOWN_TIMEOUT_S)
        sock.close()
