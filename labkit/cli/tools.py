"""`labkit validate | image build | plots export | notebooks build|check|reset`: instructor tooling."""

from __future__ import annotations

from pathlib import Path

import click

from labkit.cli.lifecycle import make_lab
from labkit.cli.output import table
from labkit.ops.validate import DEFAULT_K8S_VERSION
from labkit.runtime.manifests import IMAGE


@click.command()
@click.option("--k8s-version", default=DEFAULT_K8S_VERSION, show_default=True,
              help="Kubernetes version of the schemas")
@click.option("--manifests", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="manifests folder (default: the repo's manifests/)")
def validate(k8s_version: str, manifests: Path | None) -> int:
    """Validate the manifests: strict schemas plus consistency checks."""
    from labkit.ops.validate import summary, validate_all

    problems = validate_all(k8s_version, manifests)
    n_obj, n_files = summary(manifests)
    if problems:
        for p in problems:
            click.echo(f"FAIL {p}")
        click.echo(f"{len(problems)} problem(s) in {n_obj} objects ({n_files} files).")
        return 1
    click.echo(f"OK: {n_obj} objects in {n_files} files valid against Kubernetes {k8s_version} "
               f"(strict), plus Gateway API, kind config, Dockerfile and consistency checks.")
    return 0


@click.group()
def image() -> None:
    """The lab's container image."""


@image.command()
@click.option("--kind", "kind_cluster", metavar="CLUSTER", help="load the image into this kind cluster")
@click.option("--tag", default=IMAGE, show_default=True)
@click.option("--dry-run", is_flag=True, help="print the commands only")
def build(kind_cluster: str | None, tag: str, dry_run: bool) -> int:
    """docker build (+ kind load docker-image with --kind)."""
    from labkit.ops.image import ImageError, build_commands
    from labkit.ops.image import build as build_image

    if dry_run:
        for cmd in build_commands(tag, kind_cluster):
            click.echo(" ".join(cmd))
        return 0
    try:
        build_image(tag, kind_cluster)
    except ImageError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return 0


@click.group()
def plots() -> None:
    """The notebooks' figures."""


@plots.command()
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--use-running", is_flag=True,
              help="use the running lab (LABKIT_MODE) instead of a temporary local one")
def export(directory: Path, use_running: bool) -> None:
    """Make every notebook figure from a real lab and save PNGs in DIR."""
    from labkit.workbook.figures import export_all

    written = export_all(directory, make_lab() if use_running else None)
    for path in written:
        click.echo(str(path))
    click.echo(f"wrote {len(written)} figures to {directory}")


@click.group()
def notebooks() -> None:
    """The workbook's notebooks: instructor sources, student edition, resets."""


@notebooks.command(name="build")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--from", "prefer", type=click.Choice(["md", "ipynb"]), default=None,
              help="which file of each instructor pair wins (default: the newer one)")
def build_notebooks(names: tuple[str, ...], prefer: str | None) -> None:
    """Sync notebooks/instructor/*.md with their .ipynb, then regenerate the student edition."""
    from labkit.workbook.notebook_files import build

    results = build(list(names) or None, prefer=prefer)
    click.echo(table([r.as_dict() for r in results], ["notebook", "pair", "student"]))


@notebooks.command(name="check")
def check_notebooks() -> int:
    """Fail when an instructor pair or a student edition is out of date (make lint runs it)."""
    from labkit.workbook.notebook_files import check

    problems = check()
    for problem in problems:
        click.echo(f"FAIL {problem}")
    if problems:
        click.echo(f"{len(problems)} notebook problem(s); `labkit notebooks build` fixes most.")
        return 1
    click.echo("OK: instructor pairs in sync, student editions up to date, no stored outputs.")
    return 0


@notebooks.command(name="reset")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--dry-run", is_flag=True, help="show what would change")
def reset_notebooks(names: tuple[str, ...], dry_run: bool) -> int:
    """Restore pristine student notebooks (backups of replaced ones in notebooks/.backups/)."""
    from labkit.workbook.notebook_files import NotebookResetError, reset

    try:
        results = reset(list(names) or None, dry_run=dry_run)
    except NotebookResetError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    click.echo(table([r.as_dict() for r in results], ["notebook", "action", "backup", "source"]))
    if dry_run:
        click.echo("dry run: nothing was changed")
    return 0
