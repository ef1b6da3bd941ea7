from sqlalchemy import create_engine


def test_health_reports_database(app):
    response = app.testapp.get("/health")
    assert response.json == {"status": "healthy", "database": "connected"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in response.headers


def test_health_503_when_database_unreachable(app):
    # An engine pointing at a file in a directory that does not exist cannot connect.
    app.runtime.engine = create_engine("sqlite:////nonexistent-dir/x/oauth.db")
    response = app.testapp.get("/health", status=503)
    assert response.json == {"status": "unhealthy", "database": "disconnected"}


def test_jwks_is_empty_for_hs256(app):
    response = app.testapp.get("/.well-known/jwks.json")
    assert response.json == {"keys": []}
    assert response.headers["Cache-Control"] == "public, max-age=3600"
