"""Issue 12, finding 10, as `make run` starts the platform: each process holds its own secrets
only. Every service that keeps personal data has a field-encryption key of its own (kept in
the data directory), and each process's actor-signing key is its own; no process's
environment holds another's key."""

from pathlib import Path

from service_kit import registry


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_each_process_holds_its_own_keys_and_no_others(platform):
    services = registry.load()
    field_keys = {name: (platform.data_dir / f"field_encryption_key.{name}").read_text().strip()
                  for name, entry in services.items() if entry.needs_field_key}
    assert len(field_keys) >= 2 and len(set(field_keys.values())) == len(field_keys)
    envs = {name: environment(platform.pid(name)) for name in services}
    signing_keys = {name: env["ACTOR_SIGNING_KEY"] for name, env in envs.items()}
    assert all(signing_keys.values()) and len(set(signing_keys.values())) == len(signing_keys)
    for name, env in envs.items():
        assert env.get("FIELD_ENCRYPTION_KEY") == field_keys.get(name)
        others = [key for other, key in [*field_keys.items(), *signing_keys.items()] if other != name]
        assert not [key for key in others if any(key in value for value in env.values())], name
