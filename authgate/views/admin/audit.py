"""Admin: the audit log as a page, a JSON API, statistics and a CSV export."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from pyramid.response import Response

from authgate.audit import record
from authgate.services import admin as svc
from authgate.views._common import oauth_json
from authgate.views.admin._base import page_args, problem

API_PAGE_SIZE, API_MAX_PAGE_SIZE = 20, 100


def audit_page(request):
    query, errors = svc.AuditQuery.parse(request.params)
    page, size = page_args(request, API_PAGE_SIZE, API_MAX_PAGE_SIZE)
    db = request.dbsession
    result = svc.list_audit(db, query, page=page, page_size=size)
    if errors:
        request.response.status = 400
    export_query = urlencode({k: v for k, v in query.raw.items() if k not in errors})
    return {"page": result, "filters": query.raw, "errors": errors,
            "event_types": svc.audit_event_types(db), "severities": svc.SEVERITIES,
            "export_url": "/admin/audit/export" + (f"?{export_query}" if export_query else ""),
            "nav": "audit"}


def _bad_request(errors: dict[str, str]):
    return oauth_json({"error": "invalid_request",
                       "error_description": "; ".join(errors.values())}, 400)


def audit_api(request):
    """GET /admin/audit/api: {"logs": [...], "pagination": {...}} (reference 9.3)."""
    query, errors = svc.AuditQuery.parse(request.params)
    if errors:
        return _bad_request(errors)
    page, size = page_args(request, API_PAGE_SIZE, API_MAX_PAGE_SIZE)
    result = svc.list_audit(request.dbsession, query, page=page, page_size=size, clamp=False)
    return oauth_json({"logs": [svc.audit_json(row) for row in result.items],
                       "pagination": result.as_json()})


def audit_api_stats(request):
    query, errors = svc.AuditQuery.parse(request.params)
    if errors:
        return _bad_request(errors)
    return oauth_json(svc.audit_stats(request.dbsession, query))


def audit_export(request):
    query, errors = svc.AuditQuery.parse(request.params)
    if errors:
        return problem(request, 400, "Invalid filter", "; ".join(errors.values()),
                       back_url="/admin/audit")
    rows = svc.export_rows(request.dbsession, query)
    record(request, "AUDIT_LOG_EXPORTED", action=f"Exported {len(rows)} audit events as CSV",
           details={"filters": query.raw, "rows": len(rows),
                    "truncated": len(rows) >= svc.EXPORT_LIMIT})
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    response = Response(body=svc.audit_csv(rows).encode("utf-8"),
                        content_type="text/csv", charset="utf-8")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="audit_logs_{today}.csv"')
    return response
