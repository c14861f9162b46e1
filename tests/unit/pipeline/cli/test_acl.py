"""`vmlb acl` without a broker: what --dry-run shows, and what it refuses."""

from __future__ import annotations

from click.testing import CliRunner

from pipeline.cli.main import cli


def test_a_dry_run_shows_each_principals_acls_and_what_they_cannot_enforce(monkeypatch):
    monkeypatch.delenv("VMLB_CREDENTIALS", raising=False)
    result = CliRunner().invoke(
        cli,
        ["acl", "provision", "--dry-run", "--topic-prefix", "p.", "--guest", "vm1", "--dom0", "h1"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "User:" in line]
    assert any("User:guest-vm1" in row and "p.queue.vm1" in row and "READ" in row for row in rows)
    assert any("User:dom0-h1" in row and "p.queue." in row and "prefixed" in row for row in rows)
    assert not any("User:guest-vm1" in row and "p.jobs" in row for row in rows)
    assert "cannot enforce" in result.output


def test_provisioning_nobody_is_refused_naming_the_options():
    result = CliRunner().invoke(cli, ["acl", "provision", "--dry-run"])
    assert result.exit_code != 0
    assert "--guest, --dom0, --submitter or --worker" in str(result.exception)
