"""Shell variable lines for `labkit env`: bash/zsh `export` or PowerShell `$env:`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ecommerce.config import service_url_var


def _quote_sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _quote_ps(value: str) -> str:
    return '"' + re.sub(r'([`"$])', r"`\1", value) + '"'


def exports(urls: Mapping[str, str], shell: str = "sh") -> str:
    """One line per URL: `LABKIT_GATEWAY_URL`, `LABKIT_<SERVICE>_URL` (the names the services
    themselves read), then a comment with a first request to try."""
    if shell not in ("sh", "powershell"):
        raise ValueError("shell must be 'sh' (bash, zsh) or 'powershell'")
    lines = []
    for name, url in urls.items():
        var = service_url_var(name)
        lines.append(f"$env:{var} = {_quote_ps(url)}" if shell == "powershell"
                     else f"export {var}={_quote_sh(url)}")
    if "gateway" in urls:
        ref = "$env:LABKIT_GATEWAY_URL" if shell == "powershell" else "$LABKIT_GATEWAY_URL"
        curl = "curl.exe" if shell == "powershell" else "curl"  # PowerShell's curl is an alias
        lines.append(f"# try: {curl} -s {ref}/api/queries/users"
                     + ("" if shell == "powershell" else f"   or   curl -s -H 'Host: api.local' "
                        f"{ref}/api/users"))
    return "\n".join(lines)
