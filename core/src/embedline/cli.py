"""The ``embedline`` command: run, search, plugins, check.

User errors print one line on stderr and exit 1 (2 for usage errors); ``--debug`` adds the traceback.
Output to a reader that went away (``| head``) stops quietly with exit status 141.  Only the CLI
configures logging; the library leaves that to its host.
Only the standard library, pluggy and attrs are imported before a command needs more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from embedline import __version__
from embedline.config import DEFAULT_CONFIG

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED_ITEMS, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedline",
        description="Embed unstructured data with the right model per type; store and search it in Milvus.",
    )
    parser.add_argument("--version", action="version", version=f"embedline {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="ingest: embed the pipeline's source into its store")
    run.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"pipeline file (default: {DEFAULT_CONFIG})")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--prune", action="store_true", help="also remove rows whose source file or row is gone")

    search = sub.add_parser("search", help="nearest neighbours of a text query or a file")
    search.add_argument(
        "args", nargs="*", metavar="[CONFIG] QUERY",
        help="pipeline file (optional) and query; the query is always text, even when a file has that name",
    )  # fmt: skip
    search.add_argument("--file", metavar="PATH", help="search with this file (an image, a sound, ...), not a text")
    search.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    search.add_argument(
        "--filter", default=None, metavar="EXPR", help="a filter in the store's own syntax, e.g. 'chunk == 0' (Milvus)"
    )
    search.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="portable filter, any store; repeat to combine (all must hold): KEY=VALUE, KEY>N, KEY>=N, KEY<N, "
        "KEY<=N, KEY^=PREFIX, KEY:in=A,B. uri, modality, chunk are row fields, other keys metadata",
    )
    search.add_argument("--json", action="store_true", help="print hits as JSON")

    serve = sub.add_parser(
        "serve",
        help="serve the pipeline over HTTP: OpenAI-compatible /v1/embeddings, /search, a search page",
        description="Load the pipeline's models once and serve them: POST /v1/embeddings (OpenAI-compatible), "
        "GET /v1/models, POST /search, GET /health, the search page at /. Needs the embedline-serve distribution.",
    )
    serve.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"pipeline file (default: {DEFAULT_CONFIG})")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need a token)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--token", default=None,
        help="bearer token required on every route but /health; safer from $EMBEDLINE_SERVE_TOKEN (a command-line "
        "token shows in ps)",
    )  # fmt: skip
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow this origin (repeat)")
    serve.add_argument("--alias", action="append", default=[], metavar="NAME=COLLECTION", help="another model name (repeat)")
    serve.add_argument("--no-batching", action="store_true", help="embed each request on its own (no dynamic batching)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    for flag, what in (
        ("--max-body-bytes", "largest JSON request body"),
        ("--max-upload-bytes", "largest uploaded file"),
        ("--max-inputs", "most inputs per embeddings request"),
        ("--max-input-chars", "longest input or query, in characters"),
        ("--max-k", "most hits per search"),
    ):
        serve.add_argument(flag, type=int, default=None, metavar="N", help=f"{what} (default: the server's)")

    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="print as JSON")

    check = sub.add_parser("check", help="validate a pipeline file without running it")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"pipeline file (default: {DEFAULT_CONFIG})")
    check.add_argument("--json", action="store_true", help="print the checked pipeline as JSON (secrets hidden)")

    evaluate = sub.add_parser(
        "eval",
        help="evaluate the pipeline's text model (STS, retrieval) or its stored search results (--sections)",
        description="Evaluate the pipeline's text model on scored sentence pairs (--sts) and/or a retrieval task "
        "(--from-sts, --queries/--corpus/--qrels, or --beir). Give at least one task. Nothing is stored. "
        "With --sections, --queries/--qrels score what the pipeline's store returns (run the pipeline first): "
        "each hit is mapped to the markdown section it comes from and judged against sections.",
    )
    evaluate.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"pipeline file (default: {DEFAULT_CONFIG})")
    evaluate.add_argument("--sts", metavar="TSV", help="STS-benchmark TSV of scored pairs: Spearman/Pearson of cosine vs score")
    evaluate.add_argument("--from-sts", metavar="TSV", help="retrieval built from STS pairs: pairs scored >= --threshold "
                          "are queries (sentence1) with their sentence2 relevant, among all second sentences")
    evaluate.add_argument("--threshold", type=float, default=4.0, help="--from-sts: lowest score of a query pair (default 4)")
    evaluate.add_argument("--queries", metavar="JSONL", help='retrieval queries, {"id": ..., "text": ...} per line')
    evaluate.add_argument("--corpus", metavar="JSONL", help='retrieval corpus, {"id": ..., "text": ...} per line')
    evaluate.add_argument("--qrels", metavar="TSV", help="relevance judgements: qid<TAB>docid<TAB>grade per line")
    evaluate.add_argument("--beir", metavar="DIR", help="a BEIR folder: queries.jsonl, corpus.jsonl, qrels/SPLIT.tsv")
    evaluate.add_argument("--split", default="test", help="--beir: which qrels file (default: test)")
    evaluate.add_argument(
        "--sections", action="store_true",
        help="with --queries and --qrels (no --corpus): search the pipeline's store and judge the section of each "
        "hit (qrels docids are path#Heading > Subheading); reports recall@1, recall@5, MRR@10, nDCG@10",
    )  # fmt: skip
    evaluate.add_argument("-k", type=int, default=10, help="cut-off for recall@k and MRR@k (default 10; nDCG is @10)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from embedline.pipeline import Pipeline

    with Pipeline.from_toml(args.config) as pipeline:
        progress = not args.no_progress and sys.stderr.isatty()
        summary = pipeline.run(progress=progress, prune=args.prune)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.format())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_ITEMS if summary.failed else EXIT_OK


def _clock(seconds: float) -> str:
    """``75.5`` -> ``1:15.5``; hours when needed."""
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{minutes}:{secs:04.1f}" if not hours else f"{hours}:{minutes:02d}:{secs:04.1f}"
    return text


def cmd_search(args: argparse.Namespace) -> int:
    from embedline.errors import CollectionNotFoundError, EmbedlineError
    from embedline.pipeline import Pipeline

    if args.file is not None:  # a file query is explicit: the positional arguments are only [CONFIG]
        if len(args.args) > 1:
            raise _Usage("with --file, search takes only [CONFIG]; give a text query or --file, not both")
        config, query = (args.args[0] if args.args else DEFAULT_CONFIG), None
    elif len(args.args) in (1, 2):
        config, query = (args.args if len(args.args) == 2 else (DEFAULT_CONFIG, args.args[0]))
    else:
        raise _Usage("search takes [CONFIG] QUERY or [CONFIG] --file PATH; quote a query that has spaces")
    if args.k < 1:
        raise _Usage("-k must be at least 1")
    search_filter = _search_filter(args)  # a malformed --where fails before anything loads
    with Pipeline.from_toml(config) as pipeline:
        try:
            hits = pipeline.search(query, file=args.file, k=args.k, filter=search_filter)
        except CollectionNotFoundError as exc:  # the library's message names no command; ours may
            raise EmbedlineError(f"{exc}: run `embedline run {config}` first") from exc
    from embedline.snippets import section_of, snippet

    if args.json:
        rows = []
        for hit in hits:
            section = section_of(hit)
            rows.append({**hit.to_dict(), "section": section, "snippet": snippet(hit.text, query, section=section)})
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, start=1):
        where = hit.uri + (f"#{hit.chunk}" if hit.modality == "text" else "")
        if "page" in hit.metadata:
            where += f"  p. {hit.metadata['page']}"
        if "start" in hit.metadata and "end" in hit.metadata:  # audio/video: the moment
            where += f"  {_clock(hit.metadata['start'])}-{_clock(hit.metadata['end'])}"
        section = section_of(hit)
        print(f"{rank:>2}. {hit.score:.4f}  {where}" + (f"  ({section})" if section else ""))
        if hit.text:
            print(f"    {snippet(hit.text, query, section=section, width=100)}")
    return EXIT_OK


def _search_filter(args: argparse.Namespace) -> Any:
    """``--filter`` (the store's own syntax, passed through) or ``--where`` (portable), not both."""
    if not args.where:
        return args.filter
    if args.filter is not None:
        raise _Usage("use either --filter (the store's own syntax) or --where (portable), not both")
    from embedline.errors import ConfigError
    from embedline.filters import parse_where

    try:
        return parse_where(args.where)
    except ConfigError as exc:
        raise _Usage(str(exc)) from None


def cmd_plugins(args: argparse.Namespace) -> int:
    from embedline.plugins import get_plugin_manager

    rows = get_plugin_manager().describe()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no plugins installed")
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['name']:<12} {row['version']:<8} ERROR {row['error']}")
                continue
            modalities = ",".join(row["modalities"]) or "-"
            hooks = ", ".join(row["hooks"])
            print(f"{row['name']:<12} {row['version']:<8} {row['kind']:<8} {modalities:<24} hooks: {hooks}")
    broken = [row["name"] for row in rows if "error" in row]
    if broken:  # the whole list is printed; the exit status tells a script that something is wrong
        print(f"embedline: error: plugin(s) failed to load: {', '.join(broken)}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from embedline.config import check_pipeline, load_config, redacted
    from embedline.plugins import get_plugin_manager

    pm = get_plugin_manager()
    config = check_pipeline(load_config(args.config), pm)
    if args.json:
        print(json.dumps(redacted(config), indent=2))
        return EXIT_OK
    print(f"ok: {config.origin}")
    if config.source is not None:
        print(f"  source: {config.source.path} ({config.source.format}; chunk by {config.source.chunk.by})")
    for spec in config.models:
        print(
            f"  model:  {spec.plugin} {spec.name or '(plugin default)'} -> collection "
            f"{config.collection_for(spec)!r} [{', '.join(spec.modalities or ())}]"
        )
    declared = pm.info(config.store.plugin).options
    shown = redacted(config)["store"]["options"]  # secrets and credentials inside URIs as ***
    written = [
        f"{name}={shown[name]!r}"
        for name, value in config.store.options.items()
        if name not in declared or value != declared[name].default
    ]
    print(f"  store:  {config.store.plugin}" + (f" ({', '.join(written)})" if written else ""))
    print(f"  executor: {config.executor.plugin}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from embedline import evaluate as ev
    from embedline.contracts import describe_fingerprint
    from embedline.errors import CollectionNotFoundError, EmbedlineError
    from embedline.pipeline import Pipeline

    triple = (args.queries, args.corpus, args.qrels)
    if args.sections:
        if args.corpus or not (args.queries and args.qrels):
            raise _Usage("--sections takes --queries and --qrels, and no --corpus: the pipeline's store is the corpus")
    elif any(triple) and not all(triple):
        raise _Usage("--queries, --corpus and --qrels go together")
    if args.beir and any(triple):
        raise _Usage("use either --beir or --queries/--corpus/--qrels")
    if not (args.sts or args.from_sts or args.beir or any(triple)):
        raise _Usage("give a task: --sts, --from-sts, --queries/--corpus/--qrels or --beir")
    if args.k < 1:
        raise _Usage("-k must be at least 1")
    tasks = []  # read every file before loading the model: a typo fails in milliseconds
    if args.sts:
        tasks.append(("sts", ev.read_sts(args.sts)))
    if args.from_sts:
        tasks.append(("retrieval", ev.retrieval_from_sts(ev.read_sts(args.from_sts), args.threshold)))
    if args.beir:
        tasks.append(("retrieval", ev.read_beir(args.beir, args.split)))
    if args.sections:
        tasks.append(("sections", ev.read_queries_qrels(args.queries, args.qrels)))
    elif all(triple):
        tasks.append(("retrieval", ev.read_retrieval(*triple)))
    with Pipeline.from_toml(args.config) as pipeline:
        model = pipeline.model("text")
        results = []
        for kind, data in tasks:
            if kind == "sts":
                results.append(ev.evaluate_sts(model, data))
            elif kind == "retrieval":
                results.append(ev.evaluate_retrieval(model, data, args.k))
            else:
                try:
                    results.append(ev.evaluate_sections(pipeline, data))
                except (CollectionNotFoundError, ev.EmptyStoreError) as exc:  # the library names no command
                    raise EmbedlineError(f"{exc}: run `embedline run {args.config}` first") from exc
    if args.json:
        out = {"config": str(args.config), "model": model.fingerprint, "identity": model.identity, "results": results}
        print(json.dumps(out, indent=2, default=str))
    else:
        print(ev.format_results(describe_fingerprint(model.fingerprint), results))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from embedline.errors import EmbedlineError

    try:
        import embedline_serve
    except ImportError:
        raise EmbedlineError("embedline serve needs the embedline-serve distribution: pip install embedline-serve") from None
    aliases = {}
    for alias in args.alias:
        name, sep, collection = alias.partition("=")
        if not sep or not name or not collection:
            raise _Usage(f"--alias expects NAME=COLLECTION, got {alias!r}")
        aliases[name] = collection
    limits = {
        key: getattr(args, key)
        for key in ("max_body_bytes", "max_upload_bytes", "max_inputs", "max_input_chars", "max_k")
        if getattr(args, key) is not None
    }
    return embedline_serve.main(
        args.config, args.host, args.port, args.token, cors_origins=args.cors_origin, aliases=aliases,
        batching=not args.no_batching, max_wait_ms=args.max_wait_ms, log_level="debug" if args.debug else "info",
        **limits,
    )  # fmt: skip


class _Usage(Exception):
    pass


COMMANDS = {
    "run": cmd_run, "search": cmd_search, "serve": cmd_serve, "plugins": cmd_plugins, "check": cmd_check, "eval": cmd_eval,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.debug:
        # Library progress bars ("Loading weights") would bury ours; read when transformers imports.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for noisy in ("pymilvus", "grpc", "sentence_transformers", "transformers", "httpx", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        logging.getLogger("embedline").setLevel(logging.ERROR)  # failures are in the summary
    from embedline.errors import EmbedlineError

    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that went away shows here, not in the flush at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except _Usage as exc:
        parser.error(str(exc))
    except EmbedlineError as exc:
        if args.debug:
            raise
        print(f"embedline: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("embedline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR  # pragma: no cover - parser.error exits


def _stdout_closed() -> int:
    """The reader of our output went away (``embedline plugins | head -1``): stop without a word,
    as Unix tools do, and exit 141, the status a shell gives a tool stopped by SIGPIPE."""
    try:  # what is still buffered goes nowhere, so the flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (redirected in a test)
        pass
    return EXIT_BROKEN_PIPE


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
