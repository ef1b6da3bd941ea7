"""The request object every view sees: its properties are per request, and the class
carrying them is built once at start-up (authgate.app.bake_request_properties)."""

from __future__ import annotations

from pyramid.response import Response

from authgate import hookimpl


def _probe(request):
    # Touch every baked property: each must compute for this request, not reuse another's.
    body = (f"{id(type(request))} {request.client_ip} "
            f"{request.authgate is request.registry.authgate} "
            f"{request.dbsession is request.dbsession} {request.tm is request.tm} "
            f"{request.current_user}")
    return Response(body, content_type="text/plain")


def _include_probe(config):
    config.add_route("probe", "/_probe")
    config.add_view(_probe, route_name="probe")


class ProbePlugin:
    __name__ = "request_probe"

    @hookimpl
    def authgate_pyramid_includes(self, settings):
        return [_include_probe]


def test_request_properties_are_per_request_on_one_class(make_app):
    app = make_app(settings={"authgate.trusted_proxies": "127.0.0.1"}, plugins=[ProbePlugin()])
    first = app.testapp.get("/_probe", headers={"X-Forwarded-For": "203.0.113.7"}).text.split()
    second = app.testapp.get("/_probe", headers={"X-Forwarded-For": "198.51.100.9"}).text.split()
    # Each request computed its own client IP (reify keeps the value on the instance) ...
    assert first[1:] == ["203.0.113.7", "True", "True", "True", "None"]
    assert second[1:] == ["198.51.100.9", "True", "True", "True", "None"]
    # ... on the same class: Pyramid's per-request subclass is no longer built.
    assert first[0] == second[0]
