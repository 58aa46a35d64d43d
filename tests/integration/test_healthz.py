def test_healthz_reports_a_stopped_redis_as_down(db, client, settings, spare_redis):
    settings.REDIS_URL = spare_redis.url
    up = client.get("/healthz").json()
    assert up["checks"]["redis"]["ok"] is True
    assert up["checks"]["database"]["ok"] is True

    spare_redis.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_healthz_without_worker_or_monitor_is_503(db, client):
    body = client.get("/healthz")
    assert body.status_code == 503
    checks = body.json()["checks"]
    assert checks["worker"]["ok"] is False and "no Celery worker" in checks["worker"]["detail"]
    assert checks["monitor"]["ok"] is False and "manage.py monitor" in checks["monitor"]["detail"]
