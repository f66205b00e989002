"""Build the MCP server object: one MCPServer with every kda-mcp tool, prompt and resource."""

import importlib.metadata

from mcp.server.mcpserver import MCPServer

from kda_mcp.server import catalog, compile, dashboard, evaluation, integrity, knowledge, ledger, phases, profiling, uris
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.settings import Settings

INSTRUCTIONS = """\
kda-mcp gives you the tools of a GPU-kernel optimization loop against real hardware.
Typical loop: capabilities -> get_definition -> search_wiki / read_wiki_page -> write a solution ->
compile_solution -> run_benchmark -> profile_solution -> iterate. get_phase_prompt returns the
step-by-step plan for each phase (phase1: first correct kernel; phase2: profile-guided exploration;
phase3: per-shape specialization). The reference, tolerances and baseline are fixed by the dataset.
"""


def version() -> str:
    try:
        return importlib.metadata.version("kda-mcp")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_server(app: KdaApp) -> MCPServer:
    mcp = MCPServer(
        name="kda-mcp",
        title="kda-mcp: GPU kernel optimization tools",
        instructions=INSTRUCTIONS,
        version=version(),
        log_level="WARNING",
    )
    catalog.register(mcp, app)
    compile.register(mcp, app)
    evaluation.register(mcp, app)
    ledger.register(mcp, app)
    profiling.register(mcp, app)
    integrity.register(mcp, app)
    knowledge.register(mcp, app)
    phases.register(mcp, app)
    uris.register(mcp, app)
    dashboard.register(mcp, app)  # render_chart, and the /ui pages over HTTP
    return mcp


def create_app(settings: Settings | None = None) -> tuple[MCPServer, KdaApp]:
    """The server and its domain state; tests and the CLI both start here."""
    app = KdaApp(settings or Settings.resolve())
    return build_server(app), app
