"""OCI hooks: programs run at fixed points of the lifecycle, with the container's state JSON on stdin."""

from __future__ import annotations

from ketch.common import fastjson
from ketch.common.errors import SystemFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["run_hooks"]


def run_hooks(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Run each hook in order; the first that fails or exceeds its timeout raises SystemFailure."""
    if not hooks:
        return
    import subprocess  # costly to import; most containers have no hooks

    payload = fastjson.dumps(state).encode()
    for i, hook in enumerate(hooks):
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env", []))
        timeout = hook.get("timeout")
        try:
            proc = subprocess.run(
                args,
                executable=path,
                input=payload,
                env=env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SystemFailure(f"{kind} hook #{i} ({path}) did not finish within {timeout}s") from None
        except OSError as exc:
            raise SystemFailure.from_oserror(f"{kind} hook #{i} ({path})", exc) from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            code = proc.returncode if proc.returncode > 0 else f"signal {-proc.returncode}"
            raise SystemFailure(
                f"{kind} hook #{i} ({path}) failed with exit {code}" + (f": {detail}" if detail else "")
            )


def hook_list(config: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = config.get("hooks", {}).get(kind, [])
    return hooks
