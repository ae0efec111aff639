"""docker-compose.yml, checked without Docker: against the Compose Specification's JSON Schema (a vendored
copy, tests/fixtures/compose/), for secrets only in .env, and in step with scripts/e2e (which runs the same
topology locally)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from tests.conftest import FIXTURES, ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
E2E = ROOT / "scripts" / "e2e"
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}")
SECRETS = ("POSTGRES_PASSWORD", "NEWSLETTER_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
           "AIRFLOW_API_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD", "NEWSLETTER_TOKEN_SECRET")  # fmt: skip
# Set by scripts/e2e only because it runs on the host: the async driver the venv has, and the scheduler health
# server bound to 127.0.0.1 on a free port (in compose each container has its own network namespace).
E2E_ONLY = {
    "AIRFLOW_HOME",  # the image sets it; e2e uses a temp dir
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
}
# Only meaningful with the `celery` profile, which scripts/e2e (LocalExecutor) does not mirror.
COMPOSE_ONLY = {"AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads((FIXTURES / "compose" / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors)


def test_the_schema_rejects_a_broken_file(compose):
    """The check has teeth: a typo in a service key fails it."""
    schema = json.loads((FIXTURES / "compose" / "compose-spec.json").read_text(encoding="utf-8"))
    broken = {**compose, "services": {**compose["services"], "mailpit": {"image": "x", "prots": ["1:1"]}}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_the_stack_has_every_component(compose):
    services = compose["services"]
    expected = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "mailpit", "newsletter-web", "redis", "airflow-worker"}  # fmt: skip
    assert expected <= set(services)
    assert services["redis"]["profiles"] == ["celery"] and services["airflow-worker"]["profiles"] == ["celery"]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"  # Celery is opt-in
    # Every Airflow component shares one JWT secret and one Fernet key, from .env.
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-init"):
        svc_env = services[name]["environment"]
        assert svc_env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?"), name
        assert svc_env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?"), name
    # The app's database is a separate database on the same server, created by the init script.
    assert "postgres:5432/newsletter" in env["NEWSLETTER_DATABASE_URL"]
    assert "CREATE DATABASE newsletter" in compose["configs"]["newsletter-db"]["content"]


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            values.setdefault(m.group(1), m.group(2).strip())
    return values


def test_every_variable_is_documented_and_no_secret_is_shipped():
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text(encoding="utf-8"))}
    documented = _env_example()
    assert used - set(documented) == set(), "variables used by docker-compose.yml but not in .env.example"
    for name in SECRETS:
        assert name in used and documented[name] == "", f"{name} must be required and empty in .env.example"
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text()) if (m.group(2) or "").startswith(":?")}
    assert set(SECRETS) <= required


def _e2e_exports() -> set[str]:
    text = E2E.read_text(encoding="utf-8")
    return set(re.findall(r"^export ((?:AIRFLOW|NEWSLETTER)[A-Z0-9_]*)=", text, re.M)) | set(
        re.findall(r"^((?:AIRFLOW|NEWSLETTER)[A-Z0-9_]*)=\$\(", text, re.M)
    )


def test_e2e_sets_the_same_variables_as_the_stack(compose):
    stack = {k for k in compose["x-airflow-env"] if k.startswith(("AIRFLOW", "NEWSLETTER"))}
    e2e = _e2e_exports()
    assert stack - COMPOSE_ONLY - e2e == set(), "set by docker-compose.yml, missing in scripts/e2e"
    assert e2e - E2E_ONLY - stack == set(), "set by scripts/e2e, missing in docker-compose.yml"


def test_e2e_uses_the_stack_ports_by_default(compose):
    text = E2E.read_text(encoding="utf-8")
    services = compose["services"]
    for service, variable in (("airflow-apiserver", "API_PORT"), ("newsletter-web", "WEB_PORT")):
        port = services[service]["ports"][0].rsplit(":", 1)[1]
        assert f"{variable}=$(free_port {port})" in text, service
    smtp = next(p for p in services["mailpit"]["ports"] if "SMTP" in p)
    assert f"SMTP_PORT=$(free_port {smtp.rsplit(':', 1)[1]})" in text


def test_the_image_copies_files_that_exist(compose):
    """The inline Dockerfile COPYs from the repository: every source must exist (a rename would break builds)."""
    dockerfile = compose["x-build"]["dockerfile_inline"]
    sources = [word for line in dockerfile.splitlines() if line.startswith("COPY")
               for word in line.split()[1:-1] if not word.startswith("--")]  # fmt: skip
    assert sources and all((ROOT / s).exists() for s in sources), sources


def test_the_celery_profile_is_what_e2e_celery_proves(compose):
    """scripts/e2e --celery runs the `celery` profile without Docker: every variable of the stack, a Redis broker,
    the Celery results in the Airflow metadata database, `airflow celery worker`, an image with the celery extra."""
    text = (ROOT / "scripts" / "e2e-celery").read_text(encoding="utf-8")
    exports = set(re.findall(r"^export ((?:AIRFLOW|NEWSLETTER)[A-Z0-9_]*)=", text, re.M)) | set(
        re.findall(r"^((?:AIRFLOW|NEWSLETTER)[A-Z0-9_]*)=\$\(", text, re.M)
    )
    stack = {k for k in compose["x-airflow-env"] if k.startswith(("AIRFLOW", "NEWSLETTER"))}
    assert stack - exports == set(), "set by docker-compose.yml, missing in scripts/e2e-celery"
    env = compose["x-airflow-env"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "\nexport AIRFLOW__CELERY__BROKER_URL=redis://" in text
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    metadata_db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].rsplit("/", 1)[1] == metadata_db
    assert "\nexport AIRFLOW__CELERY__RESULT_BACKEND=db+${PG_BASE/postgresql:/postgresql+psycopg:}/$AF_DB" in text
    assert compose["services"]["airflow-worker"]["command"] == ["celery", "worker"]
    assert "'$BIN/airflow' celery worker" in text
    assert '-e ".[postgres,celery]"' in compose["x-build"]["dockerfile_inline"]
