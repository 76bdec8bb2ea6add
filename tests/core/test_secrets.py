"""Secret references: syntax checked at load, resolved only at run time, never shown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from flowyard.errors import SecretError
from flowyard.loader import check_flow
from flowyard.options import Options, SecretRef
from flowyard.secrets import RedactingFilter, Secrets, redactor

FLOW = """apiVersion: flowyard/v1
kind: Flow
metadata: {{name: s}}
source:
  file: {{path: in}}
targets:
  - file: {{path: out, name: "{name}"}}
"""


def test_malformed_references_are_reported_at_load(write_flow: Callable[..., Path]) -> None:
    issues = check_flow(write_flow(FLOW.format(name="${vault:X}-${secret:}-${env:OK}")))
    texts = [f"{i.position.line}:{i.position.column}: {i.message}" for i in issues]
    assert texts[0].startswith("7:30: unknown reference kind 'vault'")
    assert texts[1].startswith("7:41: malformed reference '${secret:}'")
    assert len(texts) == 2


class Credentials(Options):
    password: SecretRef


def test_a_literal_secret_in_options_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not be written in the flow file"):
        Credentials(password="hunter22")
    assert Credentials(password="${secret:SFTP_PASSWORD}").password == "${secret:SFTP_PASSWORD}"


def test_secrets_resolve_from_a_directory_then_the_environment(tmp_path: Path) -> None:
    (tmp_path / "WMS_TOKEN").write_text("tok-from-file-123\n")
    # (an ${env:} value is redacted like a secret, process-wide: no common word here)
    secrets = Secrets(directory=tmp_path, environ={"ERP_KEY": "key-from-env-456", "PLANT": "plant-env-7Q"})
    assert secrets.resolve("Bearer ${secret:WMS_TOKEN}") == "Bearer tok-from-file-123"
    assert secrets.resolve({"h": ["${secret:ERP_KEY}", "${env:PLANT}"]}) == {"h": ["key-from-env-456", "plant-env-7Q"]}
    assert redactor.redact("plant plant-env-7Q") == "plant ***"
    with pytest.raises(SecretError, match="secret MISSING is not available"):
        secrets.resolve("${secret:MISSING}")


def test_resolved_secrets_are_redacted_from_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "PW").write_text("s3cr3t-value-789")
    value = Secrets(directory=tmp_path, environ={}).resolve("${secret:PW}")
    assert redactor.redact(f"login failed with {value}") == "login failed with ***"
    logger = logging.getLogger("flowyard.test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.WARNING, logger="flowyard.test.redaction"):
        logger.warning("connecting with %s", value)
    assert "s3cr3t-value-789" not in caplog.text
    assert "connecting with ***" in caplog.text
