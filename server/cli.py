"""`kda-mcp serve` (stdio or Streamable HTTP) and `kda-mcp doctor`."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import sys
import threading
import time

from kda_mcp.server.connections import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEP_ALIVE_S, DEFAULT_MAX_REQUESTS, DEFAULT_MAX_REQUESTS_PER_TOKEN
from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.settings import Settings

log = logging.getLogger("kda_mcp")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data and isolation")
    data.add_argument("--dataset", metavar="PATH", help="FlashInfer-Trace dataset folder (default: $FIB_DATASET_PATH, else the embedded sample)")
    data.add_argument("--wiki", metavar="PATH", action="append", help="extra wiki root to index, repeatable (default: $KDA_WIKI_PATHS)")
    data.add_argument("--state-dir", metavar="PATH", help="jobs, attempts and artifacts (default: $KDA_STATE_DIR or ~/.local/state/kda-mcp)")
    data.add_argument("--cache-dir", metavar="PATH", help="rebuildable caches (default: $KDA_CACHE_DIR or ~/.cache/kda-mcp)")
    data.add_argument(
        "--workspace",
        metavar="PATH",
        action="append",
        help="folder the tools may read and write (starter kits, packed solutions), repeatable "
        "(default: $KDA_WORKSPACES; else over stdio the current folder, over HTTP <state-dir>/workspace)",
    )
    data.add_argument(
        "--sandbox",
        choices=["auto", "user", "none"],
        help="how untrusted code (solutions, builds) runs: user = as unprivileged sandbox users (needs root), "
        "none = as the server's own user, auto = user when the server runs as root (default: $KDA_SANDBOX or auto)",
    )
    data.add_argument("--sandbox-user", metavar="NAME", help="base name of the sandbox users (default: $KDA_SANDBOX_USER or kda-sandbox)")


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where GPU work runs")
    where.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="local = this machine's GPUs; ray = a Ray cluster's: benchmarks, profiles and sanitizer runs become Ray tasks "
        "of one GPU each, on the nodes of the GPU kind asked for (needs pip install 'kda-mcp[ray]') (default: $KDA_EXECUTOR or local)",
    )
    where.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: the cluster to join, 'auto' (this machine is a node of it) or ray://HEAD:10001 (default: $KDA_RAY_ADDRESS or auto)",
    )
    where.add_argument(
        "--gpu-kind",
        metavar="KIND",
        help="with --executor ray: the GPU kind (nodes advertise the resource gpu_<kind>, e.g. h200) jobs run on when the caller names none "
        "(default: $KDA_GPU_KIND, else the cluster's only kind)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kda-mcp", description="MCP server with the tools of a GPU-kernel optimization loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)", description="Run the MCP server, over stdio (the client starts it) or Streamable HTTP.")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    _add_data_options(serve)
    _add_executor_options(serve)
    http = serve.add_argument_group("HTTP (with --http)")
    http.add_argument("--http", action="store_true", help="serve Streamable HTTP instead of stdio")
    http.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    http.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    http.add_argument("--token-file", metavar="FILE", help="file whose first line is the bearer token (default: $KDA_MCP_TOKEN)")
    http.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]", help="extra Host header to accept (DNS-rebinding guard); 'name:*' for any port")
    http.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN", help="extra Origin to accept, e.g. https://box.example:*")
    http.add_argument("--max-body-mb", type=float, default=8.0, metavar="MB", help="largest request body accepted (default 8)")
    http.add_argument("--max-requests", type=_positive_int, default=DEFAULT_MAX_REQUESTS, metavar="N", help=f"requests in flight at once, all clients (default {DEFAULT_MAX_REQUESTS}); more get 429")
    http.add_argument("--max-requests-per-token", type=_positive_int, default=DEFAULT_MAX_REQUESTS_PER_TOKEN, metavar="N", help=f"requests in flight at once per token (default {DEFAULT_MAX_REQUESTS_PER_TOKEN}); more get 429")
    http.add_argument("--header-timeout", type=_positive_float, default=DEFAULT_HEADER_TIMEOUT_S, metavar="S", help=f"close a connection whose request headers are not in after S seconds (default {DEFAULT_HEADER_TIMEOUT_S:g})")
    http.add_argument("--keep-alive-timeout", type=_positive_float, default=DEFAULT_KEEP_ALIVE_S, metavar="S", help=f"close an idle kept-alive connection after S seconds (default {DEFAULT_KEEP_ALIVE_S:g})")

    doctor = sub.add_parser("doctor", help="print what this machine can do (GPUs, toolchain, dataset, wiki)")
    _add_data_options(doctor)
    _add_executor_options(doctor)
    doctor.add_argument("--http", action="store_true", help="resolve defaults as 'serve --http' does (its workspace is under the state dir)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser(
        "node-resources",
        help="print this machine's GPU kind resource for `ray start --resources` (a Ray worker node of kda-mcp)",
        description="Print the Ray resources a kda-mcp GPU node advertises, e.g. {\"gpu_h200\": 8}: "
        "ray start --address HEAD:6379 --num-gpus 8 --resources \"$(kda-mcp node-resources)\"",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.resolve(
        dataset=args.dataset,
        wiki_paths=args.wiki,
        state_dir=args.state_dir,
        cache_dir=args.cache_dir,
        workspaces=args.workspace,
        shared=bool(getattr(args, "http", False)),  # a server for many clients gets a workspace of its own
        sandbox=args.sandbox,
        sandbox_user=args.sandbox_user,
        executor=getattr(args, "executor", None),
        ray_address=getattr(args, "ray_address", None),
        gpu_kind=getattr(args, "gpu_kind", None),
    )


def _check_executor(settings: Settings) -> None:
    """Refuse at start what cannot work: Ray options without the Ray executor, or Ray not installed."""
    from kda_mcp.tools.errors import UnavailableError
    from kda_mcp.tools.executors import ray_missing

    if settings.executor != "ray":
        if settings.ray_address or settings.gpu_kind:
            raise UnavailableError("--ray-address and --gpu-kind (or KDA_RAY_ADDRESS, KDA_GPU_KIND) only apply with --executor ray.")
        return
    missing = ray_missing()
    if missing:
        raise UnavailableError(missing)


def _not_dumpable() -> None:
    """No process of our own user may read our memory or environment (the token) through /proc,
    or trace us: children that run a solution, without a sandbox user, included."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        log.warning("could not make the server non-dumpable; the token is only as safe as this user's other processes")


def _serve(args: argparse.Namespace) -> int:
    from kda_mcp.server.app import create_app, version
    from kda_mcp.server.http import HttpOptions, check_bind, ephemeral_token, load_token, serve_http

    _not_dumpable()
    settings = _settings(args)
    _check_executor(settings)
    mcp, app = create_app(settings)
    app.dataset()  # fail at start, with the file named, rather than on the first call
    if settings.executor == "ray":  # join the cluster now, so a wrong address fails here and not on the first job
        cluster = app.executor.describe()
        if not cluster.connected:
            raise KdaError(cluster.error or f"could not join the Ray cluster at {cluster.address}")
        kinds = ", ".join(f"{k.kind} x{k.gpus}" for k in cluster.kinds) or "no GPU kinds yet"
        log.info("GPU work runs on the Ray cluster at %s: %d node(s), %s", cluster.address, sum(n.alive for n in cluster.nodes), kinds)
    threading.Thread(target=_warm_wiki, args=(app,), name="wiki-warmup", daemon=True).start()
    stopper = Stopper(app)

    if not args.http:
        log.info("kda-mcp %s on stdio; dataset %s", version(), settings.dataset_path)
        # The stdio transport cannot stop gracefully (its reader thread waits on stdin): on SIGTERM,
        # close the jobs and leave at once.
        signal.signal(signal.SIGTERM, lambda sig, _frame: stopper.stop(sig, grace_s=0))
        try:
            mcp.run("stdio")
        finally:
            stopper.finish()
        return 0

    token = load_token(env_token=os.environ.get("KDA_MCP_TOKEN"), token_file=args.token_file)
    check_bind(args.host, token)
    if token is None:
        token = ephemeral_token()
        print(
            f"kda-mcp: no KDA_MCP_TOKEN or --token-file given; this run's bearer token is:\n  {token}\n"
            "Clients must send 'Authorization: Bearer <token>'. Set KDA_MCP_TOKEN to choose a stable one.",
            file=sys.stderr,
            flush=True,
        )
    options = HttpOptions(
        host=args.host,
        port=args.port,
        token=token,
        allowed_hosts=args.allowed_host,
        allowed_origins=args.allowed_origin,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        header_timeout_s=args.header_timeout,
        keep_alive_s=args.keep_alive_timeout,
        max_requests=args.max_requests,
        max_requests_per_token=args.max_requests_per_token,
    )
    # uvicorn stops on SIGTERM, giving open requests options.graceful_stop_s; the stopper's deadline
    # covers a call that holds on past that (a thread that cannot be cancelled, a blocked loop).
    try:
        serve_http(
            mcp,
            options,
            health={"server": "kda-mcp", "version": version()},
            log_level=args.log_level.lower(),
            on_signal=lambda sig: stopper.stop(sig, grace_s=STOP_DEADLINE_S - JOB_CLOSE_BUDGET_S),
        )
    finally:
        stopper.finish()
    return 0


STOP_DEADLINE_S = 4.5  # stop signal to exit, at most (the promise is 5 s)
JOB_CLOSE_BUDGET_S = 1.5  # of which closing the jobs (cancel, kill their children, record) may take


class Stopper:
    """Ends the process within STOP_DEADLINE_S of a stop signal, with this server's unfinished jobs
    recorded as interrupted.

    stop(sig, grace_s), called from the signal handler, starts a watchdog thread. The main thread
    normally gets there first: the transport stops, then finish() closes the jobs and exits. If it
    does not within grace_s (a call that cannot be cancelled holds a worker thread, or blocks the
    event loop), the watchdog closes the jobs itself, bounded by JOB_CLOSE_BUDGET_S, and exits.
    After a signal the exit skips the interpreter's teardown (seconds, with torch and the wiki index
    loaded, and it would wait on worker threads stuck in such calls); atexit handlers still run on
    the main thread's way out.
    """

    def __init__(self, app: object) -> None:
        self.app = app
        self.signal: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    def stop(self, sig: int, *, grace_s: float) -> None:
        if self._watchdog is not None:
            return
        self.signal = sig
        log.warning("signal %d: stopping (within %.1f s)", sig, grace_s + JOB_CLOSE_BUDGET_S)
        self._watchdog = threading.Thread(target=self._deadline, args=(grace_s,), name="kda-stop", daemon=True)
        self._watchdog.start()

    def finish(self) -> None:
        """The main thread's way out: close the jobs; after a stop signal, exit now."""
        self.close_jobs()
        if self.signal is not None:
            atexit._run_exitfuncs()
            _exit_now(0)

    def _deadline(self, grace_s: float) -> None:
        time.sleep(grace_s)
        if grace_s > 0:
            log.warning("still running %.1f s after the stop signal (a call that cannot be cancelled); exiting now", grace_s)
        closer = threading.Thread(target=self.close_jobs, name="kda-stop-jobs", daemon=True)
        closer.start()
        closer.join(JOB_CLOSE_BUDGET_S)
        if not self._closed.is_set():
            log.error("jobs did not close within %.1f s; exiting anyway (the next start marks them interrupted)", JOB_CLOSE_BUDGET_S)
        _exit_now(0 if self._closed.is_set() else 128 + (self.signal or signal.SIGTERM))

    def close_jobs(self) -> None:
        """Cancel this server's running jobs (killing their processes) and record them as interrupted.
        Only if the runner was ever created: a server that ran no job has nothing to close."""
        with self._lock:
            if self._closed.is_set():
                return
            try:
                if "jobs" in self.app.__dict__:
                    self.app.jobs.close()  # type: ignore[attr-defined]  # records its unfinished jobs interrupted
            except Exception:
                log.exception("closing the job runner failed")
            finally:
                self._closed.set()


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe: nothing left to tell
            pass
    os._exit(code)


def _warm_wiki(app: object) -> None:
    try:
        app.wiki()  # type: ignore[attr-defined]
    except Exception as exc:  # the first wiki call will report it properly
        log.warning("wiki index not ready: %s", exc)


def _doctor(args: argparse.Namespace) -> int:
    from kda_mcp.tools.app import KdaApp

    settings = _settings(args)
    _check_executor(settings)
    app = KdaApp(settings)
    caps = app.capabilities()
    report = caps.model_dump(mode="json", exclude_none=True)
    report["settings"] = {  # what the data options resolved to, for a server started with the same ones
        "workspaces": [str(p) for p in settings.workspaces],
        "state_dir": str(settings.state_dir),
        "cache_dir": str(settings.cache_dir),
        "sandbox": settings.sandbox,
        "sandbox_user": settings.sandbox_user,
        "executor": settings.executor,
    }
    try:
        dataset = app.dataset()
        report["dataset_definitions"] = len(dataset.names())
        if dataset.problems:
            report["dataset_problems"] = dataset.problems
    except KdaError as exc:
        report["dataset_error"] = str(exc)
    try:
        report["wiki"] = app.wiki().status().model_dump(mode="json", exclude_none=True)
    except KdaError as exc:
        report["wiki_error"] = str(exc)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if isinstance(value, (dict, list)):
            print(f"{key}:")
            for line in json.dumps(value, indent=2).splitlines()[1:-1]:
                print(f"  {line.strip()}")
        else:
            print(f"{key}: {value}")
    return 0


def _node_resources() -> int:
    """{"gpu_<kind>": count} for this machine's GPUs, the resources its `ray start` advertises."""
    from collections import Counter

    from kda_mcp.tools.capabilities import probe_gpus
    from kda_mcp.tools.executors import kind_of, resource_of

    gpus, _, note = probe_gpus()
    if not gpus:
        print(f"kda-mcp: no GPU here to advertise ({note})", file=sys.stderr)
        return 2
    print(json.dumps(dict(Counter(resource_of(kind_of(gpu.name)) for gpu in gpus))))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Logs go to stderr: in stdio mode stdout carries nothing but the protocol.
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "node-resources":
            return _node_resources()
        return _doctor(args)
    except KdaError as exc:
        print(f"kda-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
