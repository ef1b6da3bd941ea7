"""The framework ceiling: a bare Pyramid "hello" app served like AuthGate.

Same waitress options as ``[server:main]`` of the given ini file (threads,
connection_limit, asyncore_use_poll, ...), same listen override; no database,
no session, no tweens beyond Pyramid's own.  ``--inline`` serves ``/hello`` the
way ``authgate server`` serves the API's hot requests (on waitress's I/O thread,
authgate.inline_serving): a second reference, not the baseline.

    python -m bench.hello_app --listen 127.0.0.1:9000 --config production.ini
"""

from __future__ import annotations

import argparse
import signal
import sys


def make_app():
    from pyramid.config import Configurator
    from pyramid.response import Response

    def hello(request):
        return Response("Hello World!")

    with Configurator() as config:
        config.add_route("hello", "/hello")
        config.add_view(hello, route_name="hello")
        return config.make_wsgi_app()


def main(argv: list[str] | None = None) -> int:
    from waitress.server import create_server

    from authgate.cli import read_server_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--inline", action="store_true")
    args = parser.parse_args(argv)
    options = dict(read_server_section(args.config)) if args.config else {}
    options["listen"] = args.listen
    if args.threads:
        options["threads"] = args.threads
    options["threads"] = int(options.get("threads", 8))
    if args.inline:
        from authgate.inline_serving import create_server as create_inline_server

        server = create_inline_server(make_app(), post_paths=frozenset(),
                                      get_paths=frozenset({"/hello"}), **options)
    else:
        server = create_server(make_app(), **options)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"hello app listening on {args.listen} ({options['threads']} threads"
          f"{', /hello on the I/O thread' if args.inline else ''})", flush=True)
    try:
        server.run()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
