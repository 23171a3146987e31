"""`install systemd` / `uninstall systemd`: one line per action, then what to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwenops.install.run import InstallResult

_PAST = {"write": "wrote", "keep": "kept", "chmod": "chmod", "add": "added", "remove": "removed", "run": "ran",
         "skip": "skipped"}


def install_view(result: InstallResult) -> str:
    lines = []
    for action in result.actions:
        verb = f"would {action.verb}" if result.dry_run and action.verb != "skip" else _PAST[action.verb]
        lines.append(f"{verb:<14} {action.target}" + (f"  ({action.detail})" if action.detail else ""))
    if result.command == "install" and not result.dry_run and result.root is None:
        lines += [
            "qwenops.service is starting (a GPU load takes minutes). Follow it, then check it:",
            "  journalctl -u qwenops -f        # ready at 'STARTING → RUNNING'",
            f"  sudo QWENOPS_ENV_FILE={result.env_file} qwenops smoke-stream --profile {result.profile}",
        ]
        if result.gateway_unit is not None:
            from qwenops.render.deploy import GATEWAY_PORT

            lines += [
                f"qwenops-gateway.service follows it on port {GATEWAY_PORT} (journalctl -u qwenops-gateway);",
                f"its clients present QWENOPS_GATEWAY_TOKEN from {result.env_file} (sudo grep TOKEN {result.env_file})",
            ]
    elif result.command == "install" and result.root is not None and not result.dry_run:
        lines.append(f"files are under {result.root}; its systemd creates the user at first boot (sysusers.d)")
    return "\n".join(lines) + "\n"
