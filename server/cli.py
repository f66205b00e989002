"""`kda-mcp serve` (stdio or Streamable HTTP) and `kda-mcp doctor`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading

from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.settings import Settings

log = logging.getLogger("kda_mcp")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", metavar="PATH", help="FlashInfer-Trace dataset folder (default: $FIB_DATASET_PATH, else the embedded sample)")
    parser.add_argument("--wiki", metavar="PATH", action="append", help="extra wiki root to index, repeatable (default: $KDA_WIKI_PATHS)")
    parser.add_argument("--state-dir", metavar="PATH", help="jobs, attempts and artifacts (default: $KDA_STATE_DIR or ~/.local/state/kda-mcp)")
    parser.add_argument("--cache-dir", metavar="PATH", help="rebuildable caches (default: $KDA_CACHE_DIR or ~/.cache/kda-mcp)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kda-mcp", description="MCP server with the tools of a GPU-kernel optimization loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    _add_data_options(serve)
    serve.add_argument("--http", action="store_true", help="serve Streamable HTTP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--token-file", metavar="FILE", help="file whose first line is the bearer token (default: $KDA_MCP_TOKEN)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]", help="extra Host header to accept (DNS-rebinding guard); 'name:*' for any port")
    serve.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN", help="extra Origin to accept, e.g. https://box.example:*")
    serve.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body accepted (default 8 MiB)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    doctor = sub.add_parser("doctor", help="print what this machine can do (GPUs, toolchain, dataset, wiki)")
    _add_data_options(doctor)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.resolve(dataset=args.dataset, wiki_paths=args.wiki, state_dir=args.state_dir, cache_dir=args.cache_dir)


def _serve(args: argparse.Namespace) -> int:
    from kda_mcp.server.app import create_app, version
    from kda_mcp.server.http import HttpOptions, check_bind, ephemeral_token, load_token, serve_http

    settings = _settings(args)
    mcp, app = create_app(settings)
    app.dataset()  # fail at start, with the file named, rather than on the first call
    threading.Thread(target=_warm_wiki, args=(app,), name="wiki-warmup", daemon=True).start()

    if not args.http:
        log.info("kda-mcp %s on stdio; dataset %s", version(), settings.dataset_path)
        mcp.run("stdio")
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
    )
    serve_http(mcp, options, health={"server": "kda-mcp", "version": version()}, log_level=args.log_level.lower())
    return 0


def _warm_wiki(app: object) -> None:
    try:
        app.wiki()  # type: ignore[attr-defined]
    except Exception as exc:  # the first wiki call will report it properly
        log.warning("wiki index not ready: %s", exc)


def _doctor(args: argparse.Namespace) -> int:
    from kda_mcp.tools.app import KdaApp

    app = KdaApp(_settings(args))
    caps = app.capabilities()
    report = caps.model_dump(mode="json", exclude_none=True)
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
        return _doctor(args)
    except KdaError as exc:
        print(f"kda-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
