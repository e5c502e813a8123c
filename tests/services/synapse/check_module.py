"""Loads etc/synapse/mxisd_password_auth.py the way Synapse loads a module, under Synapse's
own Python (the test venv of up.sh), with etc/synapse on PYTHONPATH; run by
tests/packaging.rs. Fails on an import Synapse does not have, on the README's config (the
module's docstring) being refused, on a callback registered with arguments Synapse's
ModuleApi does not take, and on a ModuleApi attribute the module uses that Synapse lacks or
that it awaits when Synapse's returns nothing to await."""

import ast
import inspect
import sys
import textwrap
from unittest import mock

import yaml
from synapse.http.client import SimpleHttpClient
from synapse.module_api import ModuleApi
from synapse.util.module_loader import load_module

import mxisd_password_auth as module


def readme_block() -> dict:
    """The `modules:` block of the module's docstring (the README's)."""
    lines = module.__doc__.splitlines()
    start = lines.index("    modules:")
    end = lines.index("", start)
    return yaml.safe_load(textwrap.dedent("\n".join(lines[start:end])))


def api_uses(tree: ast.AST):
    """(`self._api.<name>` or `self._api.http_client.<name>`, awaited) in the source."""
    awaited = {id(n.value.func) for n in ast.walk(tree) if isinstance(n, ast.Await)
               and isinstance(n.value, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Attribute) and owner.attr == "_api" \
                and isinstance(owner.value, ast.Name) and owner.value.id == "self":
            yield ModuleApi, node.attr, id(node) in awaited
        elif isinstance(owner, ast.Attribute) and owner.attr == "http_client" \
                and isinstance(owner.value, ast.Attribute) and owner.value.attr == "_api":
            yield SimpleHttpClient, node.attr, id(node) in awaited


def awaitable(function) -> bool:
    """A coroutine, or a function declared to return a Deferred."""
    returns = str(inspect.signature(function).return_annotation)
    return inspect.iscoroutinefunction(function) or "Deferred" in returns


def main() -> None:
    (entry,) = readme_block()["modules"]
    cls, config = load_module(entry, ("modules", 0))
    assert cls is module.MxisdPasswordAuth, cls
    assert config.url == "http://127.0.0.1:8090/_matrix-internal/identity/v1/check_credentials", config.url
    assert (config.timeout, config.enforce_lowercase, config.name_on_register,
            config.name_on_login, config.add_threepids) == (5.0, True, True, False, True)

    # An autospec'd ModuleApi refuses attributes and arguments Synapse's does not have.
    api = mock.create_autospec(ModuleApi, instance=True)
    provider = cls(config, api)
    api.register_password_auth_provider_callbacks.assert_called_once()
    kwargs = api.register_password_auth_provider_callbacks.call_args.kwargs
    assert kwargs == {
        "auth_checkers": {("m.login.password", ("password",)): provider.check_password},
        "check_3pid_auth": provider.check_3pid_auth,
    }, kwargs
    for callback in (provider.check_password, provider.check_3pid_auth):
        assert inspect.iscoroutinefunction(callback), callback

    checked = set()
    for owner, name, awaited in api_uses(ast.parse(open(module.__file__).read())):
        assert hasattr(owner, name), f"{owner.__name__} has no {name}"
        if awaited:
            assert awaitable(getattr(owner, name)), \
                f"{owner.__name__}.{name} is awaited but returns no awaitable"
        checked.add(f"{owner.__name__}.{name}")
    print("checked", " ".join(sorted(checked)))


main()
