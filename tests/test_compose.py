"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker engine: the compose file
is parsed with PyYAML and held against the code it runs (CLI commands parse with the real CLIs, every
HWNAS_* variable it sets is one the code reads, URLs point at the right services)."""

import ast
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("search_spaces", "latency_lut", "nas", "api")
HWNAS_SERVICES = ("migrate", "api", "worker", "ray-head", "ray-worker")
SCALABLE = ("worker", "ray-worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def shell_steps(service: dict[str, Any]) -> list[list[str]]:
    """The commands a `sh -c "a && exec b"` line runs, with compose's `$$` and the service's env expanded."""
    command = argv(service)
    if command[:2] != ["sh", "-c"]:
        return [command]
    env = environment(service)
    script = command[2].replace("$$", "$")
    script = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], script)
    steps = []
    for part in script.split("&&"):
        words = shlex.split(part)
        steps.append(words[1:] if words[0] == "exec" else words)
    return steps


def parse_cli(group: Any, args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `args` with a click CLI the way it would run them, without running anything.

    Duck-typed: typer ships its own copy of click, so its groups are no `click.Group`."""
    command = group
    path = []
    while hasattr(command, "commands"):
        assert args and args[0] in command.commands, f"{' '.join(path + args)}: no such command"
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    context = command.make_context(path[-1], list(args))  # UsageError on an unknown option or argument
    return " ".join(path), context.params


def hwnas_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    import typer

    from api.cli import app

    assert args[0] == "hwnas"
    return parse_cli(typer.main.get_command(app), args[1:])


def ray_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    from ray.scripts.scripts import cli

    assert args[0] == "ray"
    return parse_cli(cli, args[1:])


def variables_read_by_the_code() -> set[str]:
    """HWNAS_* names that appear as string constants (not docstrings) in the project's Python source."""
    names: set[str] = set()
    for package in SOURCE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    if re.fullmatch(r"HWNAS_[A-Z0-9_]+", node.value):
                        names.add(node.value)
    return names


# --- services, images, commands ------------------------------------------------------------------------


def test_the_services(services) -> None:
    assert set(services) == {"postgres", *HWNAS_SERVICES}
    assert services["postgres"]["image"] == "postgres:15"
    for name in HWNAS_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), name
        assert services[name]["image"] == services["api"]["image"], "one image for every hwnas service"


def test_commands_are_valid_invocations_of_the_real_clis(services) -> None:
    assert hwnas_cli(argv(services["migrate"])) == ("db upgrade", {})

    command, params = hwnas_cli(argv(services["api"]))
    assert command == "serve"
    assert params["host"] == "0.0.0.0" and params["worker"] is False
    assert f"{params['port']}:{params['port']}" in [str(p) for p in services["api"]["ports"]]

    *setup, run = shell_steps(services["worker"])
    assert hwnas_cli(run)[0] == "worker"
    # The worker joins the Ray cluster at the address it then hands to ray.init (HWNAS_RAY_ADDRESS).
    assert len(setup) == 1
    command, params = ray_cli(setup[0])
    assert command == "start" and not params["head"]
    assert params["address"] == environment(services["worker"])["HWNAS_RAY_ADDRESS"]

    command, head = ray_cli(argv(services["ray-head"]))
    assert command == "start" and head["head"] and head["block"]
    command, params = ray_cli(argv(services["ray-worker"]))
    assert command == "start" and params["block"] and not params["head"]
    assert params["address"] == f"ray-head:{head['port']}"
    # Every Ray node (head, workers, and the hwnas workers that join) agrees on token authentication.
    auth = {name: environment(services[name]).get("RAY_AUTH_MODE") for name in ("ray-head", "ray-worker", "worker")}
    assert len(set(auth.values())) == 1, auth


# --- environment ------------------------------------------------------------------------------------------


def test_database_url_points_at_the_postgres_service(services) -> None:
    postgres = environment(services["postgres"])
    for name in ("migrate", "api", "worker"):
        url = make_url(environment(services[name])["HWNAS_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port or 5432) == ("postgres", 5432), name
        assert url.database == postgres["POSTGRES_DB"], name
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]), name


def test_ray_address_artifacts_and_worker_settings(services) -> None:
    head_port = ray_cli(argv(services["ray-head"]))[1]["port"]
    artifact_dirs = set()
    for name in ("api", "worker"):
        env = environment(services[name])
        assert env["HWNAS_RAY_ADDRESS"] == f"ray-head:{head_port}", name
        assert env["HWNAS_EMBEDDED_WORKER"] in ("0", "false"), name  # searches run in the worker service
        mounts = dict(volume.split(":")[::-1][:2][::-1] for volume in services[name]["volumes"])
        target = env["HWNAS_ARTIFACT_DIR"]
        assert target in mounts.values(), f"{name}: the artifact directory is not on a volume"
        artifact_dirs.add(next(source for source, mounted in mounts.items() if mounted == target))
    assert artifact_dirs == {"artifacts"}, "api and workers must share one artifact volume"


def test_every_hwnas_variable_set_is_read_by_the_code(services) -> None:
    read = variables_read_by_the_code()
    assert {"HWNAS_DATABASE_URL", "HWNAS_ARTIFACT_DIR", "HWNAS_RAY_ADDRESS", "HWNAS_EMBEDDED_WORKER"} <= read
    dockerfile_env = set(re.findall(r"\b(HWNAS_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    for name, service in services.items():
        for variable in environment(service):
            if variable.startswith("HWNAS_"):
                assert variable in read, f"{name} sets {variable}, which no code reads"
    assert dockerfile_env and dockerfile_env <= read, dockerfile_env - read


# --- ordering, health, volumes, scaling -------------------------------------------------------------------


def test_depends_on_conditions(services) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {other: spec["condition"] for other, spec in services[name].get("depends_on", {}).items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("api")["migrate"] == "service_completed_successfully"
    assert conditions("worker")["migrate"] == "service_completed_successfully"
    assert conditions("worker")["ray-head"] == "service_healthy"
    assert conditions("ray-worker") == {"ray-head": "service_healthy"}
    assert services["migrate"].get("restart", "no") == "no", "a one-shot job must not restart"
    # A service_healthy dependency needs a healthcheck to wait for.
    for name in services:
        for other, condition in conditions(name).items():
            assert other in services, f"{name} depends on unknown {other}"
            if condition == "service_healthy":
                check = services[other].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{name} waits for {other}'s health"


def test_healthchecks(services) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    port = hwnas_cli(argv(services["api"]))[1]["port"]
    assert f"127.0.0.1:{port}/v1/health" in api_check
    head_port = ray_cli(argv(services["ray-head"]))[1]["port"]
    assert f"--address=ray-head:{head_port}" in services["ray-head"]["healthcheck"]["test"]


def test_volumes(compose, services) -> None:
    declared = set(compose["volumes"])
    assert {"pgdata", "artifacts"} <= declared
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    used = {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used == declared, "every named volume is declared, every declared one is used"


def test_workers_are_scalable(services) -> None:
    for name in SCALABLE:
        service = services[name]
        assert "container_name" not in service, f"{name}: a fixed name allows one replica"
        assert not service.get("ports"), f"{name}: a host port allows one replica"
        assert int(service["deploy"]["replicas"]) >= 1, name


# --- the image --------------------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    instructions = [line for line in lines if not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert re.search(r"TORCH_VERSION=2\.13\.0\b", text) and "torch==${TORCH_VERSION}" in text
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    # Every package the project installs is copied into the image.
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = {line.split()[1] for line in instructions if line.startswith("COPY ")}
    assert packages <= copied, packages - copied
    install = next(i for i, line in enumerate(instructions) if re.match(r"RUN pip install \.(\s|$)", line))
    users = [i for i, line in enumerate(instructions) if line.startswith("USER ")]
    assert users and users[-1] > install, "the image runs as a user set after the install"
    assert instructions[users[-1]].split()[1] not in ("root", "0")
    healthcheck = next(line for line in instructions if line.startswith("HEALTHCHECK"))
    assert "/v1/health" in healthcheck


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".hwnas"} <= ignored
    copied = {"pyproject.toml", "README.md", *SOURCE_PACKAGES}
    assert not copied & ignored, "the Dockerfile COPYs these"
