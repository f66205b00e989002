"""Tests of the wiki index: analysis, parsing, search/read/grep/route, caching, bundled pages, KernelWiki."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kda_mcp.tools.errors import InvalidArgumentError, NotFoundError
from kda_mcp.wiki_index import WikiIndex, WikiRoot, default_roots
from kda_mcp.wiki_index import cache as wiki_cache
from kda_mcp.wiki_index.analyzer import analyze, phrase_terms
from kda_mcp.wiki_index.frontmatter import as_list, split_front_matter
from kda_mcp.wiki_index.grep import MAX_LINE_CHARS, required_literal
from kda_mcp.wiki_index.index import BUNDLED_PAGES
from kda_mcp.wiki_index.pages import parse_page

REPO = Path(__file__).resolve().parents[1]
KERNELWIKI = Path(os.environ.get("KDA_KERNELWIKI_PATH") or REPO.parent / "shared" / "kernelwiki")
needs_kernelwiki = pytest.mark.skipif(not (KERNELWIKI / "wiki").is_dir(), reason=f"no KernelWiki snapshot at {KERNELWIKI}")

BOTTLENECK_LABELS = [
    "memory-bound",
    "latency-bound",
    "compute-bound",
    "tail-effect",
    "occupancy-limited",
    "register-spills",
    "launch-bound",
    "uncoalesced-access",
    "bank-conflicts",
]


# ---- a small wiki written per test ---------------------------------------------------------

PAGES = {
    "patterns/memory-bound.md": """---
id: pattern-memory-bound
title: Memory-bound kernels
type: pattern
tags: [memory, bandwidth]
symptoms: [memory-bound, low-dram-utilization]
techniques: [tech-vectorized, tech-split-k]
related: [tech-vectorized]
---
# Memory-bound kernels

## Symptom
DRAM throughput is near peak while the SM pipes are idle.

## Likely causes
Scalar loads, uncoalesced accesses.
""",
    "techniques/vectorized.md": """---
id: tech-vectorized
title: Vectorized loads with float4
type: technique
tags: [memory, float4]
aliases: [wide loads, LDG.128]
---
# Vectorized loads with float4

## How it works
Load 16 bytes per thread with `float4` so each warp moves 512 bytes per instruction.

## Pitfalls
Alignment: the pointer must be 16-byte aligned.
""",
    "techniques/split-k.md": """---
id: tech-split-k
title: Split-K GEMM
type: technique
tags: [gemm, reduction]
---
# Split-K GEMM

## When it matters
Few output tiles and a long K loop: use split-k to spread K over more CTAs.

## How it works
Each CTA reduces a slice of K; partial tiles are summed with atomics or a second pass.
""",
    "hardware/tma.md": """---
id: hw-tma
title: Tensor Memory Accelerator
type: hardware
tags: [tma, hopper]
---
# Tensor Memory Accelerator

Bulk copies with cp.async.bulk.tensor replace per-thread cp.async loops on sm_90a.
A tcgen05.mma consumer waits on an mbarrier. Also see wgmma.mma_async and __shfl_xor_sync.
GEMM kernels mention split-k only in passing here.
""",
    "notes/plain.md": "# Plain notes\n\nNo front matter here, just a few words about e4m3 and fp8.\n",
    "notes/broken.md": "---\nid: broken\ntags: [unclosed\n---\n# Broken YAML page\n\nStill searchable: zanzibar.\n",
}


def write_tree(base: Path, pages: dict[str, str | bytes]) -> Path:
    for rel, text in pages.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return base


@pytest.fixture
def wiki_dir(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "mywiki", PAGES)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def wiki(wiki_dir: Path, cache_dir: Path) -> WikiIndex:
    return WikiIndex.open([WikiRoot("mywiki", wiki_dir)], cache_dir=cache_dir)


# ---- analyzer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word",
    ["cp.async", "sm_90a", "split-k", "tcgen05.mma", "wgmma.mma_async", "__shfl_xor_sync", "float4", "fp8", "e4m3"],
)
def test_kernel_vocabulary_is_one_token(word: str) -> None:
    terms = analyze(f"we use {word} here")
    assert terms[0] == "use"
    assert word.lower() in terms


def test_compounds_are_also_indexed_by_parts_and_prefixes() -> None:
    assert analyze("split-k") == ["split-k", "split", "k"]
    assert {"tcgen05", "mma"} <= set(analyze("tcgen05.mma"))
    assert {"cp.async", "cp.async.bulk", "bulk", "tensor"} <= set(analyze("cp.async.bulk.tensor"))
    assert {"shfl", "xor", "sync"} <= set(analyze("__shfl_xor_sync"))
    assert {"cudamemcpyasync", "memcpi", "cuda"} <= set(analyze("cudaMemcpyAsync"))


def test_stop_words_dropped_and_only_plain_words_stemmed() -> None:
    assert analyze("The kernels are running") == ["kernel", "run"]
    assert analyze("swizzling") == ["swizzl"]
    # Identifiers keep their letters: no stemming of sm_90a, float4s, tcgen05.
    assert "float4s" in analyze("float4s")
    assert analyze("Tcgen05") == ["tcgen05"]


def test_phrase_terms_use_parts_in_position_order() -> None:
    assert phrase_terms("split-k GEMM") == ["split", "k", "gemm"]
    assert phrase_terms("out of bounds") == ["out", "bound"]


# ---- front matter and page parsing --------------------------------------------------------


def test_front_matter_parsed_and_body_offset() -> None:
    text = "---\nid: x\ntags: gemm\n---\n# Title\nbody\n"
    fm = split_front_matter(text)
    assert fm.meta == {"id": "x", "tags": "gemm"}
    assert text[fm.body_start :] == "# Title\nbody\n"
    assert fm.warnings == []


def test_malformed_yaml_degrades_to_simple_pairs_with_warning() -> None:
    text = "---\nid: x\ntitle: 'A: b'\ntags: [unclosed\n---\nbody\n"
    fm = split_front_matter(text)
    assert fm.meta == {"id": "x", "title": "A: b"}  # the list is lost, the id survives
    assert text[fm.body_start :] == "body\n"
    assert fm.warnings and "malformed YAML" in fm.warnings[0]


def test_unclosed_or_non_mapping_front_matter() -> None:
    unclosed = split_front_matter("---\nid: x\n# never closed\n")
    assert unclosed.meta == {} and unclosed.body_start == 0 and unclosed.warnings
    listed = split_front_matter("---\n- a\n- b\n---\nbody")
    assert listed.meta == {} and "not a mapping" in listed.warnings[0]


def test_as_list_normalises_scalars_and_drops_nesting() -> None:
    assert as_list("gemm") == ["gemm"]
    assert as_list(None) == []
    assert as_list([1, "b", None, {"x": 1}, " "]) == ["1", "b"]


def test_page_without_front_matter_gets_path_id_and_heading_title() -> None:
    page, warnings = parse_page("r", "notes/deep/thing.md", b"intro\n\n# The Thing\n\n## Part\ntext\n")
    assert (page.id, page.title, page.type) == ("notes/deep/thing", "The Thing", "page")
    assert page.headings == ["The Thing", "Part"]
    assert warnings == []


def test_type_from_source_category_and_folder() -> None:
    source, _ = parse_page("kw", "sources/prs/x/PR-1.md", b"---\nid: pr-1\nsource_category: upstream-code\n---\n")
    assert source.type == "source"
    technique, _ = parse_page("kw", "wiki/techniques/x.md", b"---\nid: t\ncandidate_techniques: [a]\ntechniques: b\n---\n")
    assert technique.type == "technique"
    assert technique.techniques == ["b", "a"]


def test_headings_inside_code_fences_are_ignored() -> None:
    page, _ = parse_page("r", "x.md", b"# Real\n```bash\n# not a heading\n```\n## Also real\n")
    assert page.headings == ["Real", "Also real"]


# ---- search -------------------------------------------------------------------------------


def test_search_ranks_title_match_first(tmp_path: Path, cache_dir: Path) -> None:
    pages = {
        "a.md": "---\nid: body-heavy\ntitle: Layouts\n---\n" + "swizzle the tile; " * 6 + "\n",
        "b.md": "---\nid: titled\ntitle: Swizzle\n---\nXOR the column index with the row.\n",
        "c.md": "---\nid: unrelated\n---\n# Other\nnothing here\n",
    }
    wiki = WikiIndex.open([WikiRoot("w", write_tree(tmp_path / "w", pages))], cache_dir=cache_dir)
    result = wiki.search("swizzle")
    assert [h.id for h in result.hits] == ["titled", "body-heavy"]
    assert result.total == 2


def test_search_compound_whole_outranks_parts(wiki: WikiIndex) -> None:
    ids = [h.id for h in wiki.search("split-k").hits]
    assert ids[0] == "tech-split-k"
    assert "hw-tma" in ids  # the body-only mention still matches, lower


def test_search_hits_cite_id_and_root_path(wiki: WikiIndex) -> None:
    hit = wiki.search("vectorized float4").hits[0]
    assert hit.id == "tech-vectorized"
    assert hit.path == "mywiki/techniques/vectorized.md"
    assert hit.root == "mywiki" and hit.type == "technique" and "float4" in hit.tags


def test_search_finds_compound_by_its_parts_and_phrases(wiki: WikiIndex) -> None:
    assert wiki.search("split k").hits[0].id == "tech-split-k"
    assert [h.id for h in wiki.search("tcgen05").hits] == ["hw-tma"]
    assert [h.id for h in wiki.search('"split k gemm"').hits][0] == "tech-split-k"
    assert [h.id for h in wiki.search("cp.async").hits] == ["hw-tma"]


def test_search_filters(wiki: WikiIndex) -> None:
    assert {h.type for h in wiki.search("memory loads", type="technique").hits} == {"technique"}
    assert [h.id for h in wiki.search("memory", tag="float4").hits] == ["tech-vectorized"]
    assert wiki.search("memory", root="mywiki").hits
    with pytest.raises(NotFoundError, match="Unknown page type 'techniqe'.*technique"):
        wiki.search("memory", type="techniqe")
    with pytest.raises(NotFoundError):
        wiki.search("memory", root="nope")


def test_snippet_is_short_plain_and_marked(wiki: WikiIndex) -> None:
    hit = wiki.search("alignment pointer").hits[0]
    assert hit.id == "tech-vectorized"
    assert "**Alignment**" in hit.snippet and "**pointer**" in hit.snippet
    assert len(hit.snippet) <= 240
    assert "#" not in hit.snippet and "`" not in hit.snippet


def test_search_without_matches_suggests_what_to_try(wiki: WikiIndex) -> None:
    result = wiki.search("quetzalcoatl")
    assert result.hits == [] and result.total == 0
    assert result.suggestion and "Types:" in result.suggestion and "technique" in result.suggestion


@pytest.mark.parametrize("query", ['title:foo AND (', '"unclosed phrase', "* ? ~ ^ [ ]", "OR AND NOT", "a\x00b"])
def test_search_never_raises_on_odd_syntax(wiki: WikiIndex, query: str) -> None:
    result = wiki.search(query)
    assert isinstance(result.hits, list)


def test_search_rejects_empty_query_and_bad_limit(wiki: WikiIndex) -> None:
    with pytest.raises(InvalidArgumentError):
        wiki.search("   ")
    with pytest.raises(InvalidArgumentError):
        wiki.search("memory", limit=0)


# ---- read ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "tech-vectorized",
        "mywiki:tech-vectorized",
        "mywiki/techniques/vectorized.md",
        "techniques/vectorized.md",
        "techniques/vectorized",
        "vectorized.md",
    ],
)
def test_read_by_id_or_path(wiki: WikiIndex, ref: str) -> None:
    page = wiki.read(ref)
    assert page.id == "tech-vectorized"
    assert page.text.startswith("# Vectorized loads with float4")
    assert page.outline == ["# Vectorized loads with float4", "## How it works", "## Pitfalls"]
    assert page.next_offset is None and page.total_chars == len(page.text)


def test_read_section_case_insensitive(wiki: WikiIndex) -> None:
    section = wiki.read("tech-vectorized", section="pitfalls")
    assert section.section == "## Pitfalls"
    assert section.text.startswith("## Pitfalls\nAlignment")
    assert "How it works" not in section.text
    with pytest.raises(InvalidArgumentError, match="## How it works"):
        wiki.read("tech-vectorized", section="Benchmarks")


def test_read_pages_by_offset(wiki: WikiIndex) -> None:
    full = wiki.read("tech-split-k").text
    pieces, offset = [], 0
    while offset is not None:
        chunk = wiki.read("tech-split-k", offset=offset, max_chars=40)
        assert len(chunk.text) <= 40
        pieces.append(chunk.text)
        offset = chunk.next_offset
    assert "".join(pieces) == full
    with pytest.raises(InvalidArgumentError, match="past the end"):
        wiki.read("tech-split-k", offset=len(full) + 1)


def test_read_unknown_page_suggests_close_ids(wiki: WikiIndex) -> None:
    with pytest.raises(NotFoundError, match="tech-split-k"):
        wiki.read("tech-splitk")


@pytest.mark.parametrize("ref", ["../../etc/passwd", "/etc/passwd", "mywiki/../x.md", "mywiki:../../etc/passwd", "a\x00b", "C:\\x.md"])
def test_read_refuses_paths_outside_roots(wiki: WikiIndex, ref: str) -> None:
    with pytest.raises(InvalidArgumentError):
        wiki.read(ref)


def test_symlink_out_of_root_is_not_indexed(tmp_path: Path, cache_dir: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\nhunter2\n")
    root = write_tree(tmp_path / "w", {"a.md": "# A\n"})
    (root / "leak.md").symlink_to(outside)
    wiki = WikiIndex.open([WikiRoot("w", root)], cache_dir=cache_dir)
    assert wiki.status().pages == 1
    assert any("outside the root" in w for w in wiki.status().warnings)
    with pytest.raises(NotFoundError):
        wiki.read("leak.md")


# ---- grep ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [".*", "a|b", r"\w+", "ab", "(foo|bar)", "x?yz?", "[abc]{5}"])
def test_grep_needs_a_required_literal(wiki: WikiIndex, pattern: str) -> None:
    with pytest.raises(InvalidArgumentError, match="literal"):
        wiki.grep(pattern)


def test_required_literal_extraction() -> None:
    assert required_literal(r"cp\.async") == "cp.async"
    assert required_literal("(foo|bar)bazz") == "bazz"
    assert required_literal("x(?:abc)+y") == "abc"
    assert required_literal("(abc)?") is None
    assert required_literal("foo_x|foo_y") == "foo_"  # re factors the common prefix out


def test_grep_finds_lines_with_file_line_numbers(wiki: WikiIndex) -> None:
    result = wiki.grep(r"cp\.async")
    assert [(m.id, m.path, m.line_no) for m in result.matches] == [("hw-tma", "mywiki/hardware/tma.md", 9)]
    assert "cp.async.bulk.tensor" in result.matches[0].line
    assert result.truncated is False and result.pages_scanned == 6
    assert wiki.grep("CP.ASYNC").matches  # ignore_case by default
    assert not wiki.grep("CP.ASYNC", ignore_case=False).matches


def test_grep_filters_and_caps(tmp_path: Path, cache_dir: Path) -> None:
    long_line = "x " * 400 + "needle " + "y " * 400
    pages = {f"p{i}.md": f"---\nid: p{i}\ntype: note\ntags: [t{i % 2}]\n---\nneedle one\nneedle two\n" for i in range(10)}
    pages["long.md"] = long_line
    wiki = WikiIndex.open([WikiRoot("w", write_tree(tmp_path / "w", pages))], cache_dir=cache_dir)
    capped = wiki.grep("needle", max_matches=5)
    assert len(capped.matches) == 5 and capped.truncated
    assert len(wiki.grep("needle", tag="t1", max_matches=200).matches) == 10
    assert wiki.grep("needle", type="note").pages_scanned == 10
    long_match = wiki.grep("needle", type="page").matches[0]
    assert len(long_match.line) <= MAX_LINE_CHARS and "needle" in long_match.line


def test_grep_rejects_bad_and_long_patterns(wiki: WikiIndex) -> None:
    with pytest.raises(InvalidArgumentError, match="unterminated character set"):
        wiki.grep("abc[")
    with pytest.raises(InvalidArgumentError, match="limit is 300"):
        wiki.grep("a" * 301)


# ---- route, listings, status ----------------------------------------------------------------


def test_route_goes_symptom_to_pattern_to_techniques(wiki: WikiIndex) -> None:
    hits = wiki.route("memory-bound")
    assert [h.id for h in hits] == ["pattern-memory-bound", "tech-vectorized", "tech-split-k"]
    assert hits[0].snippet.startswith("DRAM throughput")
    assert [h.id for h in wiki.route("Low DRAM utilization", limit=1)] == ["pattern-memory-bound"]


def test_route_falls_back_to_search(wiki: WikiIndex) -> None:
    assert [h.id for h in wiki.route("alignment")] == ["tech-vectorized"]


def test_get_types_tags(wiki: WikiIndex) -> None:
    info = wiki.get("pattern-memory-bound")
    assert info.symptoms == ["memory-bound", "low-dram-utilization"]
    assert info.techniques == ["tech-vectorized", "tech-split-k"]
    assert {c.name: c.count for c in wiki.types()} == {"technique": 2, "page": 2, "pattern": 1, "hardware": 1}
    assert wiki.tags()[0].name == "memory" and wiki.tags()[0].count == 2


def test_bad_pages_degrade_without_failing_the_index(tmp_path: Path, cache_dir: Path) -> None:
    pages: dict[str, str | bytes] = dict(PAGES)
    pages["bad-bytes.md"] = b"# Latin-1 \xe9t\xe9 page\nquokka\n"
    pages["dup.md"] = "---\nid: tech-split-k\n---\n# Duplicate id\n"
    wiki = WikiIndex.open([WikiRoot("w", write_tree(tmp_path / "w", pages))], cache_dir=cache_dir)
    status = wiki.status()
    assert status.pages == 8
    joined = "\n".join(status.warnings)
    assert "malformed YAML" in joined and "not valid UTF-8" in joined and "already used" in joined
    assert wiki.search("zanzibar").hits[0].id == "broken"
    assert wiki.search("quokka").hits[0].path == "w/bad-bytes.md"
    assert wiki.get("dup").title == "Duplicate id"


def test_default_roots_and_missing_root(tmp_path: Path, cache_dir: Path) -> None:
    a = write_tree(tmp_path / "one" / "wiki", {"a.md": "# A\n"})
    b = write_tree(tmp_path / "two" / "wiki", {"b.md": "# B\n"})
    missing = tmp_path / "nowhere"
    roots = default_roots(os.pathsep.join([str(a), str(b), str(missing), ""]))
    assert [r.name for r in roots] == ["bundled", "wiki", "wiki-2", "nowhere"]
    assert roots[0].path == BUNDLED_PAGES
    wiki = WikiIndex.open(roots[1:], cache_dir=cache_dir)
    status = wiki.status()
    assert [(r.name, r.available, r.pages) for r in status.roots] == [("wiki", True, 1), ("wiki-2", True, 1), ("nowhere", False, 0)]
    assert any("nowhere" in w for w in status.warnings)
    assert wiki.read("wiki-2:b").path == "wiki-2/b.md"


def test_default_roots_reads_env_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDA_WIKI_PATHS", str(tmp_path / "kw"))
    assert [(r.name, r.path) for r in default_roots()] == [("bundled", BUNDLED_PAGES), ("kw", tmp_path / "kw")]
    assert [r.name for r in default_roots("")] == ["bundled"]


def test_package_does_not_import_mcp() -> None:
    code = "import sys, wiki_index; sys.exit(1 if any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---- cache --------------------------------------------------------------------------------


def test_cache_reused_then_rebuilt_when_a_page_changes(wiki_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots = [WikiRoot("mywiki", wiki_dir)]
    first = WikiIndex.open(roots, cache_dir=cache_dir).status()
    second = WikiIndex.open(roots, cache_dir=cache_dir).status()
    assert first.built_now and not second.built_now
    assert second.index_key == first.index_key and second.cache_path == first.cache_path

    (wiki_dir / "techniques" / "split-k.md").write_text("---\nid: tech-split-k\ntitle: Changed\n---\nnew words: ocelot\n")
    monkeypatch.setattr(wiki_cache, "STALE_AFTER_S", 0.0)
    third_index = WikiIndex.open(roots, cache_dir=cache_dir)
    third = third_index.status()
    assert third.built_now and third.index_key != first.index_key
    assert third_index.search("ocelot").hits[0].title == "Changed"
    remaining = sorted(p.name for p in cache_dir.iterdir() if p.is_dir())
    assert remaining == [Path(third.cache_path).name]  # the old build and no temp folders


def test_damaged_cache_is_rebuilt(wiki_dir: Path, cache_dir: Path) -> None:
    roots = [WikiRoot("mywiki", wiki_dir)]
    folder = Path(WikiIndex.open(roots, cache_dir=cache_dir).status().cache_path)
    (folder / "pages.json").write_text("{not json")
    reopened = WikiIndex.open(roots, cache_dir=cache_dir)
    assert reopened.status().built_now and reopened.search("split-k").hits


def test_concurrent_opens_build_once(wiki_dir: Path, cache_dir: Path) -> None:
    results: list[bool] = []
    errors: list[BaseException] = []

    def open_once() -> None:
        try:
            results.append(WikiIndex.open([WikiRoot("mywiki", wiki_dir)], cache_dir=cache_dir).status().built_now)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [False, False, True]
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(wiki_cache.TEMP_PREFIX)]


def test_publish_race_loser_discards_its_copy(tmp_path: Path) -> None:
    final = tmp_path / "ix-k"
    final.mkdir()
    (final / "marker").write_text("winner")
    loser = tmp_path / "tmp-k"
    loser.mkdir()
    (loser / "marker").write_text("loser")
    assert wiki_cache.publish(loser, final) is False
    assert not loser.exists() and (final / "marker").read_text() == "winner"


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KDA_CACHE_DIR", str(tmp_path / "kda"))
    assert wiki_cache.default_cache_dir() == tmp_path / "kda" / "wiki"
    monkeypatch.delenv("KDA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wiki_cache.default_cache_dir() == tmp_path / "xdg" / "kda-mcp" / "wiki"


# ---- the bundled pages --------------------------------------------------------------------

BUNDLED_FILES = sorted(BUNDLED_PAGES.rglob("*.md")) if BUNDLED_PAGES.is_dir() else []
# The pages are being written alongside this package; until there are 30, these are expected to fail.
bundled_in_progress = pytest.mark.xfail(len(BUNDLED_FILES) < 30, reason="bundled pages still being written", strict=False)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> WikiIndex:
    return WikiIndex.open([WikiRoot("bundled", BUNDLED_PAGES)], cache_dir=tmp_path_factory.mktemp("bundled-cache"))


@bundled_in_progress
def test_bundled_pages_have_complete_front_matter() -> None:
    assert len(BUNDLED_FILES) >= 30
    problems = []
    for path in BUNDLED_FILES:
        fm = split_front_matter(path.read_text(encoding="utf-8"))
        missing = [k for k in ("id", "title", "type", "tags") if not fm.meta.get(k)]
        if fm.warnings or missing:
            problems.append(f"{path.relative_to(BUNDLED_PAGES)}: {fm.warnings or ''} missing {missing}")
        elif fm.meta["type"] not in ("hardware", "technique", "pattern", "tool"):
            problems.append(f"{path.relative_to(BUNDLED_PAGES)}: unknown type {fm.meta['type']!r}")
    assert problems == []


def test_bundled_ids_unique_and_index_clean(bundled: WikiIndex) -> None:
    status = bundled.status()
    assert status.warnings == []
    ids = [bundled.page(f"bundled/{p.relative_to(BUNDLED_PAGES).as_posix()}").id for p in BUNDLED_FILES]
    assert len(ids) == len(set(ids))


@bundled_in_progress
def test_bundled_patterns_name_existing_techniques(bundled: WikiIndex) -> None:
    patterns = [bundled.get(p.id) for p in bundled._table.pages if p.type == "pattern"]
    assert patterns
    known = {p.id for p in bundled._table.pages}
    for pattern in patterns:
        assert pattern.symptoms, pattern.id
        assert pattern.techniques, pattern.id
        assert set(pattern.techniques) <= known, (pattern.id, set(pattern.techniques) - known)


@bundled_in_progress
@pytest.mark.parametrize("label", BOTTLENECK_LABELS)
def test_every_bottleneck_label_routes_to_a_pattern(bundled: WikiIndex, label: str) -> None:
    hits = bundled.route(label)
    assert hits and hits[0].type == "pattern", [h.id for h in hits]


# ---- the KernelWiki snapshot --------------------------------------------------------------


@pytest.fixture(scope="session")
def kernelwiki(tmp_path_factory: pytest.TempPathFactory) -> WikiIndex:
    return WikiIndex.open([WikiRoot("kernelwiki", KERNELWIKI)], cache_dir=tmp_path_factory.mktemp("kernelwiki-cache"))


@pytest.mark.slow
@needs_kernelwiki
def test_kernelwiki_builds(kernelwiki: WikiIndex) -> None:
    status = kernelwiki.status()
    assert status.pages > 2500
    types = {c.name for c in kernelwiki.types()}
    assert {"hardware", "technique", "pattern", "kernel", "source"} <= types


@pytest.mark.slow
@needs_kernelwiki
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tcgen05 TMEM allocation", {"hw-tmem", "hw-tcgen05-mma"}),
        ("shared memory bank conflicts swizzle", {"technique-swizzling"}),
        ("persistent kernel tile scheduler", {"technique-persistent-kernels", "technique-tile-scheduling"}),
        ("memory bound gemv", {"pattern-memory-bound"}),
        ("mbarrier arrive wait phase parity", {"hw-mbarrier"}),
        ("programmatic dependent launch griddepcontrol", {"hw-pdl-gdc"}),
        ("software exponential FMA polynomial softmax", {"technique-software-exp"}),
        ("wave quantization last wave idle SMs", {"pattern-tail-effect"}),
        ("migrate wgmma to tcgen05", {"migration-wgmma-to-tcgen05"}),
        ("2-SM cooperative MMA cta_group::2", {"hw-2sm-cooperative"}),
        ("register spills occupancy", {"pattern-register-pressure", "technique-register-budgeting"}),
    ],
)
def test_kernelwiki_expert_queries(kernelwiki: WikiIndex, query: str, expected: set[str]) -> None:
    top3 = [h.id for h in kernelwiki.search(query).hits[:3]]
    assert expected & set(top3), top3


@pytest.mark.slow
@needs_kernelwiki
def test_kernelwiki_read_grep_route(kernelwiki: WikiIndex) -> None:
    assert kernelwiki.read("wiki/patterns/memory-bound.md").id == "pattern-memory-bound"
    assert kernelwiki.read("patterns/memory-bound.md").id == "pattern-memory-bound"
    assert kernelwiki.read("kernelwiki:hw-tmem", section="Overview").section is not None
    grep = kernelwiki.grep(r"tcgen05\.alloc", type="hardware")
    assert grep.matches and all(m.path.startswith("kernelwiki/wiki/hardware/") for m in grep.matches)
    assert [h.id for h in kernelwiki.route("memory-bound")][0] == "pattern-memory-bound"
    assert [h.id for h in kernelwiki.route("tail-effect")][:2] == ["pattern-tail-effect", "pattern-low-sm-utilization"]
