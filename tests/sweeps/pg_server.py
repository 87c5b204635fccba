"""A throwaway PostgreSQL server on 127.0.0.1, for the tests and the workers benchmark.

Sweep workers on several machines share one study through a database server; SQLite cannot
be shared that way. To test that for real, without a server installed and configured by hand,
this starts Debian's `postgresql` binaries (initdb, pg_ctl) on a fresh data directory, on a
free port, listening on the loopback address only, with a password, and removes it all on
exit. PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user the
package creates (through setpriv, like the permission tests' user nobody).

Not a pytest module: benchmarks/sweep_workers.py starts its server through it too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

DATABASE, USER = "optuna", "meshgnn"
# Durability costs time and buys nothing for a database deleted after the test.
THROWAWAY = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class PostgresUnavailable(RuntimeError):
    """Why no server could be started here (the tests skip with it)."""


def find_bin_dir() -> Optional[Path]:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (Debian's layout,
    kept off PATH), else the ones on PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    for bin_dir in reversed(versions):
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> tuple[list[str], Optional[pwd.struct_passwd]]:
    """The command prefix that runs the server as a user PostgreSQL accepts (not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from None
    if shutil.which("setpriv") is None:
        raise PostgresUnavailable("running as root and setpriv (util-linux) is missing to run the server as postgres")
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"], user


def _check(cmd: list[str], what: str, log: Optional[Path] = None, **kwargs) -> None:
    """Run one server command; its failure, with the server log's end if any, as PostgresUnavailable."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip()
        if log is not None and log.is_file():
            said += " | " + log.read_text(errors="replace").strip()
        raise PostgresUnavailable(f"{what} failed ({proc.returncode}): {said[-400:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server with database `optuna` owned by user `meshgnn`; yield its SQLAlchemy URL
    (postgresql+psycopg2://...); stop it and delete its files on exit, whatever happened.

    Raises PostgresUnavailable (before yielding) when the binaries or the driver are missing
    or the server does not start, saying which.
    """
    try:
        import psycopg2  # noqa: F401  (the driver SQLAlchemy needs for the URL yielded)
    except ImportError:
        raise PostgresUnavailable("the psycopg2 driver is not installed: pip install -e '.[postgres]'") from None
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    prefix, user = _run_as()
    # Not under pytest's tmp_path: its parents are root-only (0700), the postgres user could not enter.
    home = Path(tempfile.mkdtemp(prefix="meshgnn-pg-"))
    data, password = home / "data", secrets.token_hex(8)
    (home / "pw").write_text(password)
    if user is not None:
        os.chown(home, user.pw_uid, user.pw_gid)
        os.chown(home / "pw", user.pw_uid, user.pw_gid)
    env = {**os.environ, "LC_ALL": "C"}
    started = False
    try:
        _check([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={home / 'pw'}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"], "initdb", cwd=home, env=env)
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={home} {THROWAWAY}"
        started = True  # from here on, stop it (pg_ctl may fail after the postmaster is up)
        _check([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w",
                "-t", "60", "-o", options, "start"], "pg_ctl start", home / "server.log", cwd=home, env=env)
        _check([*prefix, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
               "createdb", cwd=home, env={**env, "PGPASSWORD": password})
        yield f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, cwd=home, env=env, timeout=60)
        shutil.rmtree(home, ignore_errors=True)
