"""`labkit`: the command line for students and instructors (click). Every command has --help.

    labkit up [--step STEP] | status | env | down | reset | logs NAME | kill NAME | doctor
    labkit restart NAME | rollback NAME
    labkit events append|park|tail|stats     labkit replay
    labkit challenge list|start NAME|hint|check|give-up|status
    labkit fire SCENARIO                labkit saga place|status|list|timeline|run
    labkit chaos                        labkit bench eventstore|replay|up|commands|saga
    labkit validate                     labkit image build
    labkit plots export DIR             labkit notebooks build|check|reset

One command group per module: `lifecycle`, `events`, `sagas`, `challenges`, `bench`, `tools`.
`main(argv)` returns the exit code, so tests call it in-process.
"""

from __future__ import annotations

import sys

import click
import httpx

from labkit.cli.bench import bench
from labkit.cli.challenges import challenge
from labkit.cli.events import events, replay
from labkit.cli.lifecycle import (
    doctor,
    down,
    env,
    kill,
    logs,
    reset,
    restart,
    rollback,
    status,
    up,
)
from labkit.cli.sagas import chaos, fire, saga
from labkit.cli.tools import image, notebooks, plots, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="labkit")
def cli() -> None:
    """Run the advanced microservice patterns lab: Saga, CQRS, Event Sourcing.

    The mode comes from LABKIT_MODE (local | cluster).
    """


for command in (up, status, env, down, reset, logs, kill, restart, rollback, doctor, events, replay,
                fire, saga, chaos, challenge, bench, validate, image, plots, notebooks):
    cli.add_command(command)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ecommerce.domain.events import EventValidationError, UnreadableEventError
    from ecommerce.projections.projector import ProjectionError
    from ecommerce.store.base import ConcurrencyError, DuplicateEventError, StoreUnavailableError
    from labkit.lab import LabError
    from labkit.lab.challenges import ChallengeError
    from labkit.lab.saga_client import SagaStuckError, SagaTimeout
    from labkit.lab.scenarios import ScenarioError
    from labkit.runtime.k8s_errors import ClusterError
    from labkit.runtime.local import RuntimeErrorWithHint
    from labkit.workbook.notebook_files import NotebookError

    return (LabError, RuntimeErrorWithHint, StoreUnavailableError, EventValidationError,
            ConcurrencyError, DuplicateEventError, ClusterError, NotebookError, ValueError,
            KeyError, SagaStuckError, SagaTimeout, ChallengeError, ProjectionError,
            UnreadableEventError, ScenarioError)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the exit code is returned (errors the user can fix: one line, exit 1)."""
    try:
        result = cli.main(args=argv, prog_name="labkit", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:  # usage errors: click's message, exit 2
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except _expected_errors() as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:  # a service did not answer at all
        from labkit.ops.unreachable import unreachable

        print(f"error: {unreachable(None, str(exc.request.url), exc)}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


__all__ = ["cli", "main"]
